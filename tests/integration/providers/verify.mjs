#!/usr/bin/env node
// Checks a Standard Webhooks request the way an application receiving portcullis's signed
// deliveries does: with the standardwebhooks library's Webhook#verify (timestamp window of
// 5 minutes included), never with portcullis's own code.
//
//   node verify.mjs --secret whsec_... --body FILE --headers FILE
//
// The headers file holds "Name: value" lines, as `portcullis sign` prints them. Prints
// "verified" and exits 0; prints the library's refusal and exits 1; exits 2 on a usage error.
// The library takes the body as a string (it decodes a Buffer as UTF-8 first), so it cannot
// check a body that is not valid UTF-8: such a body is a usage error here, not a refusal.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Webhook } = require("standardwebhooks");

function usage(message) {
    console.error(`verify.mjs: ${message}`);
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
for (const key of ["secret", "body", "headers"]) {
    if (options[key] === undefined) {
        usage(`--${key} is required`);
    }
}

let body;
try {
    body = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
        readFileSync(options.body),
    );
} catch {
    usage("the body is not valid UTF-8: standardwebhooks verifies strings");
}
const headers = {};
for (const line of readFileSync(options.headers, "utf8").split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) {
        headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
}

try {
    new Webhook(options.secret).verify(body, headers, { jsonParse: false });
} catch (e) {
    console.log(`refused: ${e.message}`);
    process.exit(1);
}
console.log("verified");
