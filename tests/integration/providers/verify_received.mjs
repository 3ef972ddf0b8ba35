#!/usr/bin/env node
// Checks requests that portcullis delivered to a test receiver (tests/integration/receiver.py)
// the way the application behind portcullis checks them: with the provider's own library, on
// the headers and body as they arrived. This is what "the application's existing signature
// check still passes" means for the HTTP sink.
//
//   node verify_received.mjs --scheme github|stripe|standard --secret S --requests FILE
//
// FILE holds receiver log lines (JSON, one a line: "headers" as [name, value] pairs,
// "body_b64"). Prints "verified SEQ" or "refused SEQ: why" for each, in order; exits 0 when every
// request verified, 1 when one did not, 2 on a usage error or an empty FILE.
//   github    @octokit/webhooks-methods verify(secret, body, X-Hub-Signature-256)
//   stripe    stripe.webhooks.constructEvent(body, Stripe-Signature, secret) (300 s tolerance)
//   standard  standardwebhooks Webhook#verify(body, webhook-* headers) (5 minutes tolerance)
// The libraries verify strings: the body is decoded as UTF-8 (strictly; a body that is not
// UTF-8 is refused here, it cannot have been signed by them).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

function usage(message) {
    console.error(`verify_received.mjs: ${message}`);
    process.exit(2);
}

const options = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
        usage(`expected --name value pairs, got ${JSON.stringify(argv.slice(i))}`);
    }
    options[argv[i].slice(2)] = argv[i + 1];
}
for (const key of ["scheme", "secret", "requests"]) {
    if (options[key] === undefined) {
        usage(`--${key} is required`);
    }
}

// The one value of a header (case-insensitive); two of them is a refusal of its own.
function header(request, name) {
    const values = request.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
    if (values.length !== 1) {
        throw new Error(`${values.length} ${name} headers`);
    }
    return values[0];
}

const checkers = {
    async github(body, request) {
        const { verify } = await import("@octokit/webhooks-methods");
        if (!(await verify(options.secret, body, header(request, "x-hub-signature-256")))) {
            throw new Error("@octokit/webhooks-methods verify() returned false");
        }
    },
    async stripe(body, request) {
        const { default: Stripe } = await import("stripe");
        Stripe.webhooks.constructEvent(body, header(request, "stripe-signature"), options.secret);
    },
    async standard(body, request) {
        const { Webhook } = require("standardwebhooks");
        const headers = {};
        for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
            headers[name] = header(request, name);
        }
        new Webhook(options.secret).verify(body, headers, { jsonParse: false });
    },
};
const check = checkers[options.scheme];
if (check === undefined) {
    usage(`--scheme ${options.scheme}: expected ${Object.keys(checkers).join(", ")}`);
}

const lines = readFileSync(options.requests, "utf8").split("\n").filter((l) => l.trim() !== "");
if (lines.length === 0) {
    usage(`${options.requests} holds no request`);
}
let refused = 0;
for (const line of lines) {
    const request = JSON.parse(line);
    try {
        const body = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
            Buffer.from(request.body_b64, "base64"),
        );
        await check(body, request);
        console.log(`verified ${request.seq}`);
    } catch (e) {
        refused += 1;
        console.log(`refused ${request.seq}: ${String(e.message).replace(/\n/g, " ")}`);
    }
}
process.exit(refused === 0 ? 0 : 1);
