#!/usr/bin/env bash
# The slack scheme: X-Slack-Signature v0=<hex HMAC-SHA256 of "v0:{ts}:{body}"> with
# X-Slack-Request-Timestamp, window 300 s both ways. Slack publishes no signing library (its SDKs
# only verify), so requests are signed here with openssl dgst, as Slack's documentation
# describes. A verified url_verification is answered 200 {"challenge": ...} and not queued.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/providers/common.sh"
need python3 openssl

export SLACK_SECRET="8f742231b10e8888abcd99yyyzzz85a5"
export SLACK_SECRET_OLD="e3b0c44298fc1c149afbf4c8996fb924"
provider_config "$WORKDIR/config.yaml" <<'EOF'
  slack: {path: /webhooks/slack, verify: {scheme: slack, secrets: [{env: SLACK_SECRET}]}}
  slack_rotating: {path: /webhooks/slack-rotating, verify: {scheme: slack, secrets: [{env: SLACK_SECRET_OLD}, {env: SLACK_SECRET}]}}
EOF
start_server "$WORKDIR/config.yaml"

# slack_sign SECRET TS FILE: the X-Slack-Signature value.
slack_sign() { echo "v0=$(hmac_file sha256 "$1" hex "v0:$2:" "$3")"; }

# post_slack PATH FILE TS SIGNATURE [curl arguments]; an empty TS or SIGNATURE leaves the header
# out.
post_slack() {
    local path=$1 file=$2 ts=$3 sig=$4
    shift 4
    local h=(-H 'User-Agent: Slackbot 1.0 (+https://api.slack.com/robots)')
    [[ -z $ts ]] || h+=(-H "X-Slack-Request-Timestamp: $ts")
    [[ -z $sig ]] || h+=(-H "X-Slack-Signature: $sig")
    post "$path" "$file" "${h[@]}" "$@"
}

event_body() {
    new_body "$1"
    printf '{"token":"XXYYZZ","team_id":"T123ABC456","type":"event_callback","event_id":"Ev%s","event":{"type":"message","text":"Grüße aus Zürich 👋 — 漢字","case":"%s"}}' \
        "$RANDOM$RANDOM" "$1" >"$BODY"
}

# Accepted ---------------------------------------------------------------------------------------
event_body now
ts=$(now)
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")" \
    -H 'Content-Type: application/json'
accept slack "event signed now" "$BODY"

# Slash commands arrive form-encoded; the example from Slack's documentation on verifying
# requests.
printf '%s' 'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=caf%C3%A9&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c' \
    >"$WORKDIR/slash.txt"
ts=$(now)
post_slack /webhooks/slack "$WORKDIR/slash.txt" "$ts" \
    "$(slack_sign "$SLACK_SECRET" "$ts" "$WORKDIR/slash.txt")" \
    -H 'Content-Type: application/x-www-form-urlencoded'
accept slack "form-encoded slash command" "$WORKDIR/slash.txt"

event_body past
ts=$(($(now) - 240))
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")"
accept slack "signed 240 s ago" "$BODY"

event_body future
ts=$(($(now) + 240))
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")"
accept slack "timestamp 240 s ahead" "$BODY"

for secret_var in SLACK_SECRET_OLD SLACK_SECRET; do
    event_body "rotation-$secret_var"
    ts=$(now)
    post_slack /webhooks/slack-rotating "$BODY" "$ts" "$(slack_sign "${!secret_var}" "$ts" "$BODY")"
    accept slack_rotating "rotation: signed with $secret_var" "$BODY"
done

# Handshake: url_verification is answered with the challenge, not queued --------------------------
challenge="3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
printf '{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"%s","type":"url_verification"}' \
    "$challenge" >"$WORKDIR/url_verification.json"
ts=$(now)
post_slack /webhooks/slack "$WORKDIR/url_verification.json" "$ts" \
    "$(slack_sign "$SLACK_SECRET" "$ts" "$WORKDIR/url_verification.json")" \
    -H 'Content-Type: application/json'
expect_json_answer "url_verification" 200 "{\"challenge\":\"$challenge\"}"

# The same on the rotating route, signed with the old secret, with the fields in another order.
challenge2="kPq8${RANDOM}Zz${RANDOM}challengeTwo"
printf '{"type":"url_verification","challenge":"%s","token":"abc"}' "$challenge2" \
    >"$WORKDIR/url_verification2.json"
ts=$(now)
post_slack /webhooks/slack-rotating "$WORKDIR/url_verification2.json" "$ts" \
    "$(slack_sign "$SLACK_SECRET_OLD" "$ts" "$WORKDIR/url_verification2.json")" \
    -H 'Content-Type: application/json'
expect_json_answer "url_verification signed with the old secret" 200 \
    "{\"challenge\":\"$challenge2\"}"

# The challenge is echoed as the same JSON string, escapes included.
printf '{"type":"url_verification","challenge":"caf\\u00e9 \\"quoted\\" \\/ slash","token":"t"}' \
    >"$WORKDIR/url_verification3.json"
ts=$(now)
post_slack /webhooks/slack "$WORKDIR/url_verification3.json" "$ts" \
    "$(slack_sign "$SLACK_SECRET" "$ts" "$WORKDIR/url_verification3.json")" \
    -H 'Content-Type: application/json'
expect_json_answer "url_verification with escapes in the challenge" 200 \
    '{"challenge":"café \"quoted\" / slash"}'

# Only the top-level type counts: an event that merely contains a url_verification object is
# an event, queued.
new_body nested
printf '{"type":"event_callback","event":{"type":"url_verification","challenge":"not-a-handshake"},"event_id":"Ev%s"}' \
    "$RANDOM" >"$BODY"
ts=$(now)
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")" \
    -H 'Content-Type: application/json'
accept slack "an event with a nested url_verification object" "$BODY"

# An unverified url_verification gets the 401 and no challenge.
refused_body url-verification
printf '{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"REFUSED-challenge-%s","type":"url_verification"}' \
    "$RANDOM" >"$BODY"
ts=$(now)
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "not-the-secret" "$ts" "$BODY")"
refuse slack "url_verification with a wrong signature" signature_mismatch "$BODY" "$SLACK_SECRET"

# Refused ----------------------------------------------------------------------------------------
refused_body missing-both
post_slack /webhooks/slack "$BODY" "" ""
refuse slack "no signature, no timestamp" 'signature_missing' "$BODY"

refused_body missing-signature
post_slack /webhooks/slack "$BODY" "$(now)" ""
refuse slack "no X-Slack-Signature" signature_missing "$BODY"

refused_body missing-timestamp
ts=$(now)
sig=$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")
post_slack /webhooks/slack "$BODY" "" "$sig"
refuse slack "no X-Slack-Request-Timestamp" timestamp_missing "$BODY" "$SLACK_SECRET" "$sig"

refused_body wrong-secret
ts=$(now)
sig=$(slack_sign "a-different-signing-secret" "$ts" "$BODY")
post_slack /webhooks/slack "$BODY" "$ts" "$sig"
refuse slack "signed with another secret" signature_mismatch "$BODY" "$SLACK_SECRET" "$sig"

refused_body old-secret
ts=$(now)
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET_OLD" "$ts" "$BODY")"
refuse slack "old secret on a route that does not list it" signature_mismatch "$BODY" \
    "$SLACK_SECRET_OLD"

refused_body too-old
ts=$(($(now) - 600))
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")"
refuse slack "correctly signed 600 s ago" timestamp_too_old "$BODY" "$SLACK_SECRET"

refused_body too-new
ts=$(($(now) + 600))
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")"
refuse slack "correctly signed 600 s in the future" timestamp_too_new "$BODY" "$SLACK_SECRET"

# A signature replayed with a fresh timestamp: the signed bytes differ.
refused_body replayed
ts=$(now)
post_slack /webhooks/slack "$BODY" "$ts" "$(slack_sign "$SLACK_SECRET" $((ts - 60)) "$BODY")"
refuse slack "the signature of another timestamp" signature_mismatch "$BODY" "$SLACK_SECRET"

refused_body malformed
ts=$(now)
sig=$(slack_sign "$SLACK_SECRET" "$ts" "$BODY")
post_slack /webhooks/slack "$BODY" "$ts" "v1=${sig#v0=}"
refuse slack "v1= instead of v0=" malformed "$BODY" "$SLACK_SECRET"

post_slack /webhooks/slack "$BODY" "$ts" "${sig#v0=}"
refuse slack "hex without v0=" malformed "$BODY" "$SLACK_SECRET"

post_slack /webhooks/slack "$BODY" "$ts" "v0=$(printf 'x%.0s' {1..64})"
refuse slack "v0= followed by 64 characters that are not hex" malformed "$BODY" "$SLACK_SECRET"

post_slack /webhooks/slack "$BODY" "$ts" "${sig:0:35}"
refuse slack "v0= followed by 16 bytes of hex" malformed "$BODY" "$SLACK_SECRET"

post_slack /webhooks/slack "$BODY" "${ts}abc" "$sig"
refuse slack "timestamp that is not digits" timestamp_malformed "$BODY" "$SLACK_SECRET"

post_slack /webhooks/slack "$BODY" "$ts" "$sig" -H "X-Slack-Signature: $sig"
refuse slack "X-Slack-Signature sent twice" malformed "$BODY" "$SLACK_SECRET"

post_slack /webhooks/slack "$BODY" "$ts" "$sig" -H "X-Slack-Request-Timestamp: $ts"
refuse slack "X-Slack-Request-Timestamp sent twice" malformed "$BODY" "$SLACK_SECRET"

stop_server
check_spool
echo "slack_signature: ok (${#ACCEPTED[@]} accepted, 3 handshakes answered, $REJECTIONS refused)"
