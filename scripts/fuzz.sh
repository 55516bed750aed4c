#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while each, seeded from tests/fixtures.
#
#   scripts/fuzz.sh [seconds-per-target]     (default 60)
#
# Targets: pubsub_envelope, command_json, cloudevent, object_key, range jwt (FUZZ_TARGETS
# overrides the list). cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1
# enables them on a stable toolchain. Corpora live in fuzz/corpus/<target>,
# crashes in fuzz/artifacts/<target>. Exits non-zero when a target crashes.
set -euo pipefail

secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/fuzz"
fixtures="$root/tests/fixtures"
targets=(${FUZZ_TARGETS:-pubsub_envelope command_json cloudevent object_key range jwt})
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi

seed() {
  local dir="$fuzz/corpus/$1"
  mkdir -p "$dir"
  case "$1" in
    pubsub_envelope)
      for f in "$fixtures"/pubsub/*.json; do cp "$f" "$dir/$(basename "$f")"; done
      for f in "$fixtures"/cloudevents/*messagePublished*.json; do
        jq -c '.body' "$f" >"$dir/ce-$(basename "$f")"
      done
      ;;
    command_json)
      local i=0
      for f in "$fixtures"/pubsub/*.json "$fixtures"/cloudevents/*messagePublished*.json; do
        jq -r '(.message.data // .body.message.data // empty)' "$f" | base64 -d \
          >"$dir/data-$i.json" 2>/dev/null || true
        i=$((i + 1))
      done
      printf '%s' '{"op":"put","key":"a/b.txt","body":"hi","content_type":"text/plain","metadata":{"k":"v"}}' >"$dir/put.json"
      printf '%s' '{"op":"put","key":"a/b.bin","body_base64":"AAEC"}' >"$dir/put-b64.json"
      printf '%s' '{"op":"delete","key":"a/b.txt"}' >"$dir/delete.json"
      printf '%s' '{"op":"copy","source_key":"a","key":"b"}' >"$dir/copy.json"
      printf '%s' '{"op":"replicate","bucket":"b","name":"o","generation":"12"}' >"$dir/replicate.json"
      ;;
    cloudevent)
      # Binary mode fixtures: "name: value" lines, an empty line, the body.
      for f in "$fixtures"/cloudevents/binary-*.json; do
        { jq -r '.headers | to_entries[] | "\(.key): \(.value)"' "$f"; echo; jq -c '.body' "$f"; } \
          >"$dir/$(basename "$f")"
      done
      for f in "$fixtures"/cloudevents/structured-*.json; do
        if jq -e '.headers' "$f" >/dev/null 2>&1; then
          { jq -r '.headers | to_entries[] | "\(.key): \(.value)"' "$f"; echo; jq -c '.body' "$f"; } \
            >"$dir/$(basename "$f")"
        else
          { echo "content-type: application/cloudevents+json"; echo; cat "$f"; } >"$dir/$(basename "$f")"
        fi
      done
      for f in "$fixtures"/cloudevents/StorageObjectData-*.json; do
        { printf 'ce-specversion: 1.0\nce-id: 1\nce-type: google.cloud.storage.object.v1.finalized\n'
          printf 'ce-source: //storage.googleapis.com/projects/_/buckets/b\nce-subject: objects/o\n'
          printf 'content-type: application/json\n\n'; cat "$f"; } >"$dir/$(basename "$f")"
      done
      ;;
    jwt)
      # Tokens as callers send them: RS256 headers, Google's claims, a
      # signature Cloud Run removed, aud arrays, string booleans, nbf.
      b64() { printf '%s' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '='; }
      local h hs
      h="$(b64 '{"alg":"RS256","kid":"0123456789abcdef","typ":"JWT"}')"
      hs="$(b64 '{"alg":"HS256","kid":"0123456789abcdef","typ":"JWT"}')"
      local claims='{"iss":"https://accounts.google.com","aud":"https://bridge.test","azp":"104857600000000000002","sub":"104857600000000000002","email":"push@p.iam.gserviceaccount.com","email_verified":true,"iat":1700000000,"exp":4102444800}'
      printf '%s' "$h.$(b64 "$claims").c2ln" >"$dir/rs256"
      printf '%s' "$h.$(b64 "$claims").SIGNATURE_REMOVED_BY_GOOGLE" >"$dir/stripped"
      printf '%s' "$hs.$(b64 "$claims").c2ln" >"$dir/hs256"
      printf '%s' "$h.$(b64 '{"iss":"accounts.google.com","aud":["a","https://bridge.test"],"email":"PUSH@p.iam.gserviceaccount.com","email_verified":"true","exp":4102444800,"nbf":1}').x" >"$dir/array-aud"
      printf '%s' "$(b64 '{"alg":"none"}').$(b64 "$claims")." >"$dir/alg-none"
      ;;
    object_key)
      printf 'allowed/p/\0a/b.txt' >"$dir/plain"
      printf 'allowed/p/\0a/./b' >"$dir/dot"
      printf 'allowed/p/\0../x' >"$dir/dotdot"
      printf '\0/lead' >"$dir/slash"
      printf 'p/\0caf\xc3\xa9/\xe2\x80\xa8' >"$dir/unicode"
      ;;
    range)
      # The values the tests send, and the edges of the grammar.
      grep -rhoE '"bytes=[^"]*"' "$root/tests" "$root/src/aws/s3/range.rs" |
        tr -d '"' | sort -u | while read -r v; do
          printf '%s' "$v" >"$dir/$(printf '%s' "$v" | md5sum | cut -c1-12)"
        done
      printf '%s' 'bytes=0-0' >"$dir/first"
      printf '%s' 'bytes=-1' >"$dir/suffix"
      printf '%s' 'bytes=18446744073709551615-' >"$dir/max"
      printf '%s' 'bytes=0-1,2-3' >"$dir/multi"
      ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  seed "$t"
  log="$fuzz/target/fuzz-$t.log"
  mkdir -p "$fuzz/target" "$fuzz/artifacts/$t"
  echo "== $t: ${secs}s"
  if (cd "$fuzz" && cargo fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1) >"$log" 2>&1; then
    runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 || true)
    echo "   ok: ${runs:-?} ($(grep -E '^stat::number_of_executed_units' "$log" | tail -1 || true))"
  else
    echo "   CRASH or failure; see $log and fuzz/artifacts/$t" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -10 >&2 || true
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
