// Pins the calling thread to the n-th CPU it may run on (if there is more than one), for the
// tests of the tables the shards share: two threads left to the scheduler of a busy machine
// often share one core, and then never overlap.
//
//   std::thread a([&] { pin_to_cpu(0); run(); });
//   std::thread b([&] { pin_to_cpu(1); run(); });
#pragma once

#include <pthread.h>
#include <sched.h>

inline void pin_to_cpu(int n) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2) {
        return;
    }
    for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &allowed) && seen++ == n) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
    }
}
