#!/usr/bin/env node
// Signs a webhook body the way the provider does, with the provider's own published library,
// and prints the headers for curl, one "Name: value" per line. The integration tests use it so
// that portcullis is checked against the providers' code, never against its own signing code.
//
//   node sign.mjs github   --secret S --body FILE
//   node sign.mjs stripe   --secret whsec_... --body FILE [--timestamp T] [--scheme v1|v0]
//   node sign.mjs standard --body FILE --id MSG_ID [--timestamp T] [--headers webhook|svix]
//                          (--secret whsec_... | --seed HEX)...
//   node sign.mjs ed25519  --seed HEX --body FILE [--timestamp T]
//   node sign.mjs public-key --seed HEX [--format hex|whpk]
//   node sign.mjs https --url https://NAME:PORT/PATH --ca CA_FILE --body FILE [--connect IP]
//                       [--header "Name: value"]... --sign github|stripe|standard|ed25519|none
//                       [the signer's options]
//   node sign.mjs serve      (the same commands read from standard input, see serve())
//
// https signs the body like the command named by --sign, then POSTs it with node's https
// module, trusting only CA_FILE and checking the certificate against NAME (connecting to
// --connect, default 127.0.0.1, with NAME as SNI and Host), keep-alive: in `serve` the next
// request to the same place goes on the same connection while the server keeps it open. It
// prints "Status: N", "Reused: true|false" (an earlier request's connection), "Protocol: TLSv1.x",
// "ALPN: ..." and "Body: <the answer's body>" (on one line: the answers are one-line JSON), then
// the signed headers.
//
// Libraries: github @octokit/webhooks-methods sign(); stripe
// stripe.webhooks.generateTestHeaderString(); standard v1 standardwebhooks (or svix with
// --headers svix) Webhook#sign(); Ed25519 (Discord's X-Signature-Ed25519 and Standard Webhooks'
// v1a) tweetnacl's sign.detached: neither Discord nor the Standard Webhooks JavaScript library
// publishes an Ed25519 signer, and tweetnacl is the one Discord's documentation verifies with.
// --seed is the 32-byte Ed25519 seed in hex; the key pair is derived from it.
//
// T is Unix seconds (default: now). Several --secret/--seed for standard give a space-separated
// signature list in argument order. Slack, Shopify and the generic hmac scheme have no signing
// library: their tests sign with openssl dgst.
//
// The provider libraries take the body as a string, so a body that is not valid UTF-8 (which
// would not survive the conversion byte for byte) is refused here; the Ed25519 signer signs the
// raw bytes, so ed25519 and a standard list of --seed only take any body.
import { readFileSync } from "node:fs";
import https from "node:https";
import { createRequire } from "node:module";

// Each command loads only its own library: the stripe package alone takes most of a second to
// load on a busy machine, and the tests run this many times.
const require = createRequire(import.meta.url);

class UsageError extends Error {}

function die(message) {
    throw new UsageError(message);
}

// --name value pairs; repeated names keep every value in order (for standard's list).
function parseArgs(argv) {
    const options = { order: [] };
    for (let i = 0; i < argv.length; i += 2) {
        const name = argv[i];
        if (!name.startsWith("--") || i + 1 >= argv.length) {
            die(`expected --name value pairs, got ${JSON.stringify(argv.slice(i))}`);
        }
        const key = name.slice(2);
        const value = argv[i + 1];
        options.order.push([key, value]);
        options[key] = value;
    }
    return options;
}

function required(options, key) {
    if (options[key] === undefined) {
        die(`--${key} is required`);
    }
    return options[key];
}

function bodyBytes(options) {
    return readFileSync(required(options, "body"));
}

function bodyString(options) {
    const bytes = bodyBytes(options);
    try {
        return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
        die("the body is not valid UTF-8: the provider libraries sign strings");
    }
}

function timestamp(options) {
    if (options.timestamp === undefined) {
        return Math.floor(Date.now() / 1000);
    }
    if (!/^[0-9]+$/.test(options.timestamp)) {
        die(`--timestamp must be Unix seconds, got ${options.timestamp}`);
    }
    return Number(options.timestamp);
}

function keyPair(seedHex) {
    const nacl = require("tweetnacl");
    if (!/^[0-9a-fA-F]{64}$/.test(seedHex)) {
        die("--seed must be 64 hex characters (a 32-byte Ed25519 seed)");
    }
    return nacl.sign.keyPair.fromSeed(Buffer.from(seedHex, "hex"));
}

function ed25519Detached(seedHex, message) {
    const nacl = require("tweetnacl");
    return Buffer.from(nacl.sign.detached(new Uint8Array(message), keyPair(seedHex).secretKey));
}

const commands = {
    async github(o) {
        const { sign } = await import("@octokit/webhooks-methods");
        const signature = await sign(required(o, "secret"), bodyString(o));
        return [`X-Hub-Signature-256: ${signature}`];
    },

    async stripe(o) {
        const { default: Stripe } = await import("stripe");
        const header = Stripe.webhooks.generateTestHeaderString({
            payload: bodyString(o),
            secret: required(o, "secret"),
            timestamp: timestamp(o),
            ...(o.scheme === undefined ? {} : { scheme: o.scheme }),
        });
        return [`Stripe-Signature: ${header}`];
    },

    standard(o) {
        const id = required(o, "id");
        const ts = timestamp(o);
        const prefix = o.headers ?? "webhook";
        if (prefix !== "webhook" && prefix !== "svix") {
            die("--headers is webhook or svix");
        }
        // svix's Webhook wraps standardwebhooks' and names the headers svix-*.
        const { Webhook } = prefix === "svix" ? require("svix") : require("standardwebhooks");
        const signatures = [];
        for (const [key, value] of o.order) {
            if (key === "secret") {
                signatures.push(new Webhook(value).sign(id, new Date(ts * 1000), bodyString(o)));
            } else if (key === "seed") {
                const message = Buffer.concat([Buffer.from(`${id}.${ts}.`), bodyBytes(o)]);
                signatures.push(`v1a,${ed25519Detached(value, message).toString("base64")}`);
            }
        }
        if (signatures.length === 0) {
            die("standard needs at least one --secret whsec_... or --seed HEX");
        }
        return [
            `${prefix}-id: ${id}`,
            `${prefix}-timestamp: ${ts}`,
            `${prefix}-signature: ${signatures.join(" ")}`,
        ];
    },

    ed25519(o) {
        const ts = String(timestamp(o));
        const message = Buffer.concat([Buffer.from(ts), bodyBytes(o)]);
        const signature = ed25519Detached(required(o, "seed"), message);
        return [`X-Signature-Ed25519: ${signature.toString("hex")}`, `X-Signature-Timestamp: ${ts}`];
    },

    "public-key"(o) {
        const key = Buffer.from(keyPair(required(o, "seed")).publicKey);
        const format = o.format ?? "hex";
        if (format === "hex") {
            return [key.toString("hex")];
        }
        if (format === "whpk") {
            return [`whpk_${key.toString("base64")}`];
        }
        die("--format is hex or whpk");
    },
};

// One keep-alive agent per CA file and address, for the life of the process.
const agents = new Map();

function agentFor(ca, connect) {
    const key = `${ca}\0${connect}`;
    if (!agents.has(key)) {
        agents.set(key, new https.Agent({ keepAlive: true, maxSockets: 1, ca: readFileSync(ca) }));
    }
    return agents.get(key);
}

async function sendHttps(o) {
    const signer = required(o, "sign");
    if (signer !== "none" && !["github", "stripe", "standard", "ed25519"].includes(signer)) {
        die(`--sign ${signer}: expected github, stripe, standard, ed25519 or none`);
    }
    const signed = signer === "none" ? [] : await commands[signer](o);
    const url = new URL(required(o, "url"));
    if (url.protocol !== "https:") {
        die("--url must be https://");
    }
    const headers = {};
    const addHeader = (line) => {
        const colon = line.indexOf(":");
        if (colon <= 0) {
            die(`a header is "Name: value", got ${JSON.stringify(line)}`);
        }
        const name = line.slice(0, colon).trim();
        headers[name] = [...(headers[name] ?? []), line.slice(colon + 1).trim()];
    };
    for (const [key, value] of o.order) {
        if (key === "header") {
            addHeader(value);
        }
    }
    signed.forEach(addHeader);
    const body = bodyBytes(o);
    const connect = o.connect ?? "127.0.0.1";
    const attempt = () => new Promise((resolve, reject) => {
        const req = https.request(
            {
                method: "POST",
                host: connect,
                port: url.port,
                path: url.pathname + url.search,
                servername: url.hostname,
                headers: { ...headers, Host: url.host, "Content-Length": String(body.length) },
                agent: agentFor(required(o, "ca"), connect),
            },
            (res) => {
                // The socket goes back to the agent once the answer is read.
                const protocol = res.socket.getProtocol();
                const alpn = res.socket.alpnProtocol || "none";
                const chunks = [];
                res.on("data", (c) => chunks.push(c));
                res.on("error", reject);
                res.on("end", () => {
                    const answer = Buffer.concat(chunks).toString("utf8");
                    resolve([
                        `Status: ${res.statusCode}`,
                        `Reused: ${req.reusedSocket}`,
                        `Protocol: ${protocol}`,
                        `ALPN: ${alpn}`,
                        `Body: ${answer.replace(/\r?\n/g, " ")}`,
                        ...signed,
                    ]);
                });
            },
        );
        req.setTimeout(20000, () => req.destroy(new Error("no answer within 20 s")));
        req.on("error", (e) => {
            e.reusedSocket = req.reusedSocket;
            reject(e);
        });
        req.end(body);
    });
    try {
        return await attempt();
    } catch (e) {
        // A kept-alive connection the server closed just as the request went out (as any HTTP
        // client does, node tries once more on a new one; nothing was answered on the old one).
        if (e.reusedSocket && e.code === "ECONNRESET") {
            return attempt();
        }
        throw e;
    }
}

async function run(argv) {
    const [command, ...rest] = argv;
    if (command === "https") {
        return sendHttps(parseArgs(rest));
    }
    if (!Object.hasOwn(commands, command ?? "")) {
        die(`usage: sign.mjs ${Object.keys(commands).join("|")}|https --name value... (or: sign.mjs serve)`);
    }
    return commands[command](parseArgs(rest));
}

// `sign.mjs serve` answers many requests from one process, so that a test does not pay node's
// start-up for each signature: a request is the arguments, each followed by a NUL byte, then a
// newline; the answer is "OK <n>" and n lines, or "ERR <message>".
async function serve() {
    let pending = "";
    let queue = Promise.resolve();
    process.stdin.setEncoding("utf8");
    for await (const chunk of process.stdin) {
        pending += chunk;
        let newline;
        while ((newline = pending.indexOf("\n")) >= 0) {
            const argv = pending.slice(0, newline).split("\0").slice(0, -1);
            pending = pending.slice(newline + 1);
            queue = queue.then(async () => {
                let answer;
                try {
                    const lines = await run(argv);
                    answer = `OK ${lines.length}\n${lines.map((l) => `${l}\n`).join("")}`;
                } catch (e) {
                    answer = `ERR ${String(e.message).replace(/\n/g, " ")}\n`;
                }
                process.stdout.write(answer);
            });
        }
    }
    await queue;
}

if (process.argv[2] === "serve") {
    await serve();
} else {
    try {
        const lines = await run(process.argv.slice(2));
        process.stdout.write(lines.map((l) => `${l}\n`).join(""));
        for (const agent of agents.values()) {
            agent.destroy();
        }
    } catch (e) {
        process.stderr.write(`sign.mjs: ${e instanceof UsageError ? e.message : e.stack}\n`);
        process.exit(2);
    }
}
