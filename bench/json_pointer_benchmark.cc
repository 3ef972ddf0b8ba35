// What a lookup costs on the request path: json_find on a GitHub push body (7.6 KB, compact, as
// GitHub sends it) for pointers near its start, in its middle and near its end. Every lookup
// validates the whole body, so the figures barely depend on the pointer; BM_JsonScanUpToValue
// times the scan of only the bytes before the value's end, which is what an early exit after
// the value would cost instead.
#include "portcullis/base/json_pointer.hh"

#include <benchmark/benchmark.h>

#include <string>

using namespace portcullis::base;

namespace {

// A push of one commit (ids, names and hashes are made up; the shape is GitHub's).
const std::string github_push =
    R"~({"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"76)~"
    R"~(38417db6d59f3c431d3e1f261cc637155684cd","repository":{"id":186853002,"node_id":"MDEwOlJl)~"
    R"~(cG9zaXRvcnkxODY4NTMwMDI=","name":"portcullis","full_name":"octo-org/portcullis","private)~"
    R"~(":false,"owner":{"name":"octo-org","email":"6811672+octo-org@users.noreply.github.com",")~"
    R"~(login":"octo-org","id":6811672,"node_id":"MDQ6VXNlcjU4MzIzMQ==","avatar_url":"https://av)~"
    R"~(atars.githubusercontent.com/u/6811672?v=4","gravatar_id":"","url":"https://api.github.co)~"
    R"~(m/users/octo-org","html_url":"https://github.com/octo-org","followers_url":"https://api.)~"
    R"~(github.com/users/octo-org/followers","following_url":"https://api.github.com/users/octo-)~"
    R"~(org/following{/other_user}","gists_url":"https://api.github.com/users/octo-org/gists{/gi)~"
    R"~(st_id}","starred_url":"https://api.github.com/users/octo-org/starred{/owner}{/repo}","su)~"
    R"~(bscriptions_url":"https://api.github.com/users/octo-org/subscriptions","organizations_ur)~"
    R"~(l":"https://api.github.com/users/octo-org/orgs","repos_url":"https://api.github.com/user)~"
    R"~(s/octo-org/repos","events_url":"https://api.github.com/users/octo-org/events{/privacy}",)~"
    R"~("received_events_url":"https://api.github.com/users/octo-org/received_events","type":"Or)~"
    R"~(ganization","site_admin":false},"html_url":"https://github.com/octo-org/portcullis","des)~"
    R"~(cription":"Webhook ingress for bare-metal edge hosts — io_uring, C++20","fork":false,"ur)~"
    R"~(l":"https://github.com/octo-org/portcullis","forks_url":"https://api.github.com/repos/oc)~"
    R"~(to-org/portcullis/forks","keys_url":"https://api.github.com/repos/octo-org/portcullis/ke)~"
    R"~(ys{/key_id}","collaborators_url":"https://api.github.com/repos/octo-org/portcullis/colla)~"
    R"~(borators{/collaborator}","teams_url":"https://api.github.com/repos/octo-org/portcullis/t)~"
    R"~(eams","hooks_url":"https://api.github.com/repos/octo-org/portcullis/hooks","issue_events)~"
    R"~(_url":"https://api.github.com/repos/octo-org/portcullis/issue_events{/number}","events_u)~"
    R"~(rl":"https://api.github.com/repos/octo-org/portcullis/events","assignees_url":"https://a)~"
    R"~(pi.github.com/repos/octo-org/portcullis/assignees{/user}","branches_url":"https://api.gi)~"
    R"~(thub.com/repos/octo-org/portcullis/branches{/branch}","tags_url":"https://api.github.com)~"
    R"~(/repos/octo-org/portcullis/tags","blobs_url":"https://api.github.com/repos/octo-org/port)~"
    R"~(cullis/blobs{/sha}","git_tags_url":"https://api.github.com/repos/octo-org/portcullis/git)~"
    R"~(_tags{/sha}","git_refs_url":"https://api.github.com/repos/octo-org/portcullis/git_refs{/)~"
    R"~(sha}","trees_url":"https://api.github.com/repos/octo-org/portcullis/trees{/sha}","status)~"
    R"~(es_url":"https://api.github.com/repos/octo-org/portcullis/statuses/{sha}","languages_url)~"
    R"~(":"https://api.github.com/repos/octo-org/portcullis/languages","stargazers_url":"https:/)~"
    R"~(/api.github.com/repos/octo-org/portcullis/stargazers","contributors_url":"https://api.gi)~"
    R"~(thub.com/repos/octo-org/portcullis/contributors","subscribers_url":"https://api.github.c)~"
    R"~(om/repos/octo-org/portcullis/subscribers","subscription_url":"https://api.github.com/rep)~"
    R"~(os/octo-org/portcullis/subscription","commits_url":"https://api.github.com/repos/octo-or)~"
    R"~(g/portcullis/commits{/sha}","git_commits_url":"https://api.github.com/repos/octo-org/por)~"
    R"~(tcullis/git_commits{/sha}","comments_url":"https://api.github.com/repos/octo-org/portcul)~"
    R"~(lis/comments{/number}","issue_comment_url":"https://api.github.com/repos/octo-org/portcu)~"
    R"~(llis/issues/comments{/number}","contents_url":"https://api.github.com/repos/octo-org/por)~"
    R"~(tcullis/contents/{+path}","compare_url":"https://api.github.com/repos/octo-org/portculli)~"
    R"~(s/compare/{base}...{head}","merges_url":"https://api.github.com/repos/octo-org/portculli)~"
    R"~(s/merges","archive_url":"https://api.github.com/repos/octo-org/portcullis/{archive_forma)~"
    R"~(t}{/ref}","downloads_url":"https://api.github.com/repos/octo-org/portcullis/downloads",")~"
    R"~(issues_url":"https://api.github.com/repos/octo-org/portcullis/issues{/number}","pulls_ur)~"
    R"~(l":"https://api.github.com/repos/octo-org/portcullis/pulls{/number}","milestones_url":"h)~"
    R"~(ttps://api.github.com/repos/octo-org/portcullis/milestones{/number}","notifications_url")~"
    R"~(:"https://api.github.com/repos/octo-org/portcullis/notifications{?since,all,participatin)~"
    R"~(g}","labels_url":"https://api.github.com/repos/octo-org/portcullis/labels{/name}","relea)~"
    R"~(ses_url":"https://api.github.com/repos/octo-org/portcullis/releases{/id}","deployments_u)~"
    R"~(rl":"https://api.github.com/repos/octo-org/portcullis/deployments","created_at":15579335)~"
    R"~(65,"updated_at":"2024-05-04T10:00:00Z","pushed_at":1714900000,"git_url":"git://github.co)~"
    R"~(m/octo-org/portcullis.git","ssh_url":"git@github.com:octo-org/portcullis.git","clone_url)~"
    R"~(":"https://github.com/octo-org/portcullis.git","svn_url":"https://github.com/octo-org/po)~"
    R"~(rtcullis","homepage":null,"size":5120,"stargazers_count":42,"watchers_count":42,"languag)~"
    R"~(e":"C++","has_issues":true,"has_projects":true,"has_downloads":true,"has_wiki":true,"has)~"
    R"~(_pages":false,"has_discussions":false,"forks_count":3,"mirror_url":null,"archived":false)~"
    R"~(,"disabled":false,"open_issues_count":7,"allow_forking":true,"is_template":false,"web_co)~"
    R"~(mmit_signoff_required":false,"topics":["webhooks","io-uring","cpp20"],"visibility":"publ)~"
    R"~(ic","forks":3,"open_issues":7,"watchers":42,"default_branch":"main","stargazers":42,"mas)~"
    R"~(ter_branch":"main","organization":"octo-org","custom_properties":{}},"pusher":{"name":"m)~"
    R"~(ona","email":"mona@example.com"},"sender":{"name":"mona","email":"583231+mona@users.nore)~"
    R"~(ply.github.com","login":"mona","id":583231,"node_id":"MDQ6VXNlcjU4MzIzMQ==","avatar_url")~"
    R"~(:"https://avatars.githubusercontent.com/u/583231?v=4","gravatar_id":"","url":"https://ap)~"
    R"~(i.github.com/users/mona","html_url":"https://github.com/mona","followers_url":"https://a)~"
    R"~(pi.github.com/users/mona/followers","following_url":"https://api.github.com/users/mona/f)~"
    R"~(ollowing{/other_user}","gists_url":"https://api.github.com/users/mona/gists{/gist_id}",")~"
    R"~(starred_url":"https://api.github.com/users/mona/starred{/owner}{/repo}","subscriptions_u)~"
    R"~(rl":"https://api.github.com/users/mona/subscriptions","organizations_url":"https://api.g)~"
    R"~(ithub.com/users/mona/orgs","repos_url":"https://api.github.com/users/mona/repos","events)~"
    R"~(_url":"https://api.github.com/users/mona/events{/privacy}","received_events_url":"https:)~"
    R"~(//api.github.com/users/mona/received_events","type":"User","site_admin":false},"created")~"
    R"~(:false,"deleted":false,"forced":false,"base_ref":null,"compare":"https://github.com/octo)~"
    R"~(-org/portcullis/compare/6113728f27ae...0d1a26e67d8f","commits":[{"id":"7638417db6d59f3c4)~"
    R"~(31d3e1f261cc637155684cd","tree_id":"f9d2a07e9488b91af2641b26b9407fe22a451433","distinct")~"
    R"~(:true,"message":"Add a zero-allocation JSON pointer scanner\n\nOne pass, no recursion, d)~"
    R"~(epth bounded at 64.","timestamp":"2024-05-01T12:34:56+02:00","url":"https://github.com/o)~"
    R"~(cto-org/portcullis/commit/7638417db6d59f3c431d3e1f261cc637155684cd","author":{"name":"Mo)~"
    R"~(na Lisa Octocat","email":"mona@example.com","username":"mona"},"committer":{"name":"GitH)~"
    R"~(ub","email":"noreply@github.com","username":"web-flow"},"added":[],"removed":[],"modifie)~"
    R"~(d":["src/base/json_pointer.cc","README.md"]}],"head_commit":{"id":"7638417db6d59f3c431d3)~"
    R"~(e1f261cc637155684cd","tree_id":"f9d2a07e9488b91af2641b26b9407fe22a451433","distinct":tru)~"
    R"~(e,"message":"Add a zero-allocation JSON pointer scanner\n\nOne pass, no recursion, depth)~"
    R"~( bounded at 64.","timestamp":"2024-05-01T12:34:56+02:00","url":"https://github.com/octo-)~"
    R"~(org/portcullis/commit/7638417db6d59f3c431d3e1f261cc637155684cd","author":{"name":"Mona L)~"
    R"~(isa Octocat","email":"mona@example.com","username":"mona"},"committer":{"name":"GitHub",)~"
    R"~("email":"noreply@github.com","username":"web-flow"},"added":[],"removed":[],"modified":[)~"
    R"~("src/base/json_pointer.cc","README.md"]}})~";

void find(benchmark::State& state, std::string_view doc, std::string_view pointer) {
    for (auto _ : state) {
        JsonLookup r = json_find(doc, pointer);
        benchmark::DoNotOptimize(r);
        if (r.status != JsonStatus::found) {
            state.SkipWithError("value not found");
            break;
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(doc.size()));
}

void BM_JsonFindGithubPush(benchmark::State& state, std::string_view pointer) {
    find(state, github_push, pointer);
}
BENCHMARK_CAPTURE(BM_JsonFindGithubPush, whole, "");
BENCHMARK_CAPTURE(BM_JsonFindGithubPush, first_member, "/ref");
BENCHMARK_CAPTURE(BM_JsonFindGithubPush, repository_owner_login, "/repository/owner/login");
BENCHMARK_CAPTURE(BM_JsonFindGithubPush, head_commit_committer_username,
                  "/head_commit/committer/username");
BENCHMARK_CAPTURE(BM_JsonFindGithubPush, commit_modified_file, "/commits/0/modified/1");

void BM_JsonScanUpToValue(benchmark::State& state, std::string_view pointer) {
    const JsonValue v = json_find(github_push, pointer).value;
    const std::string_view prefix(
        github_push.data(), static_cast<size_t>(v.raw.data() + v.raw.size() - github_push.data()));
    for (auto _ : state) {
        JsonLookup r = json_find(prefix, pointer);
        benchmark::DoNotOptimize(r);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(prefix.size()));
    state.counters["bytes_scanned"] = static_cast<double>(prefix.size());
}
BENCHMARK_CAPTURE(BM_JsonScanUpToValue, repository_owner_login, "/repository/owner/login");

} // namespace
