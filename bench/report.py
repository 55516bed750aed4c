#!/usr/bin/env python3
"""Formats the figures bench/run.sh collected into a table.

    report.py FIGURES_ENV RESULTS_MD

Prints the table to stdout, writes RESULTS_MD (the table, the machine and how
each figure was taken) and exits 1 when the load run failed: a status other
than 201, a transport error, or open file descriptors growing by more than
FD_MARGIN.
"""
import shlex
import sys


def read_figures(path):
    figs = {}
    for line in open(path):
        line = line.rstrip("\n")
        if not line or "=" not in line:
            continue
        key, value = line.split("=", 1)
        parsed = shlex.split(value)
        figs[key] = parsed[0] if parsed else ""
    return figs


def kv(text):
    """'a=1 b=2' -> {'a': '1', 'b': '2'}"""
    return dict(item.split("=", 1) for item in text.split())


def ms(result, field):
    return int(result[field]) / 1000


def pair(direct, service):
    """Two wrk RESULTs of the same run, straight to S3 and through the service:
    parsed, with the service's share of direct req/s (%) and the p50 it adds (ms)."""
    d, s = kv(direct), kv(service)
    return d, s, float(s["rps"]) / float(d["rps"]) * 100, ms(s, "p50_us") - ms(d, "p50_us")


def bad(result):
    """Transport errors plus answers other than 201 in a wrk RESULT."""
    return int(result.get("errors", 0)) + sum(
        int(v) for k, v in result.items() if k.startswith("status_") and k != "status_201")


def verdict(ok):
    return "PASS" if ok else "MISS"


def main():
    f = read_figures(sys.argv[1])
    out_path = sys.argv[2]
    mib = 1024 * 1024

    start = float(f["START_MS"])
    cold, warm = float(f["COLD_MS"]), float(f["WARM_MS"])
    lat_ms = f["S3_LATENCY_MS"]
    d, s, ratio, _ = pair(f["PUT_DIRECT"], f["PUT_SERVICE"])
    fw = kv(f["PUT_FORWARDER"])
    d_rps, s_rps, fw_rps = float(d["rps"]), float(s["rps"]), float(fw["rps"])
    d50, d99 = ms(d, "p50_us"), ms(d, "p99_us")
    s50, s99 = ms(s, "p50_us"), ms(s, "p99_us")
    fw50 = ms(fw, "p50_us")
    fd, fs, far_ratio, far_added = pair(f["FAR_DIRECT"], f["FAR_SERVICE"])
    bd, bs, busy_ratio, busy_added = pair(f["BUSY_DIRECT"], f["BUSY_SERVICE"])
    qd, qs, _, seq_added = pair(f["SEQ_DIRECT"], f["SEQ_SERVICE"])
    q_d50, q_d99 = ms(qd, "p50_us"), ms(qd, "p99_us")
    q_s50, q_s99 = ms(qs, "p50_us"), ms(qs, "p99_us")
    cpu_svc = int(s["cpu_svc_us"]) / int(s["requests"])
    cpu_sink_via = int(s["cpu_sink_us"]) / int(s["requests"])
    cpu_sink = int(d["cpu_sink_us"]) / int(d["requests"])
    sts10k, sts_start, ok10k = int(f["STS_10K"]), int(f["STS_SINCE_START"]), int(f["OK_10K"])
    rep = kv(f["REPLICATION"])
    r_svc, r_plain = float(rep["svc_mbs"]), float(rep["plain_mbs"])
    r_ratio = r_svc / r_plain * 100
    r_hwm = float(rep["svc_hwm_mib"])
    load = kv(f["LOAD_SUMMARY"])
    fds_before, fds_after = int(f["LOAD_FDS_BEFORE"]), int(f["LOAD_FDS_AFTER"])
    margin = int(f["FD_MARGIN"])
    rss_before = int(f["LOAD_RSS_BEFORE_KB"]) / 1024
    rss_after = int(f["LOAD_RSS_AFTER_KB"]) / 1024
    rss_max = int(load["rss_max_kb"]) / 1024
    rss_h1 = int(load["rss_first_half_max_kb"]) / 1024
    rss_h2 = int(load["rss_second_half_max_kb"]) / 1024
    load_ok = int(load["other"]) == 0 and int(load["errors"]) == 0 and int(load["ok"]) > 0
    fds_ok = fds_after <= fds_before + margin
    rss_ok = rss_h2 <= rss_h1 * 1.10 + 1 and rss_after <= rss_max + 1
    size = int(f["BIN_BYTES"])
    size_mib = int(f["SIZE_MIB"])
    conc, secs = f["PUT_CONC"], f["PUT_SECS"]

    rows = [
        ("process start → `/healthz` 200, median of %s" % f["STARTS"],
         f"{start:.1f} ms (min {float(f['START_MIN_MS']):.1f}, max {float(f['START_MAX_MS']):.1f})",
         f"s3-sink (bare tokio/hyper server): {float(f['START_SINK_MS']):.1f} ms",
         "< 20 ms", verdict(start < 20),
         "`python3 bench/startup.py --runs %s -- target/release/gcp-aws-bridge`" % f["STARTS"]),
        ("first 1 KiB PUT, cold credentials (metadata token + STS; S3 = moto), median of %s starts" % f["COLD_STARTS"],
         f"{cold:.1f} ms ({f['COLD_STS']} STS call per start)",
         f"same PUT, warm: {warm:.1f} ms",
         "—", "—",
         "`curl -X PUT --data-binary @1k.bin http://SERVICE/v1/objects/cold-N` (first, then 3 more)"),
        (f"1 KiB PUT throughput, {conc} connections, {secs} s, S3 stand-in answering after {lat_ms} ms",
         f"{float(fs['rps']):,.0f} req/s ({far_ratio:.0f} % of direct)",
         f"direct to the same s3-sink: {float(fd['rps']):,.0f} req/s",
         "≥ 80 % of direct", verdict(far_ratio >= 80 and bad(fs) == 0),
         "`s3-sink --latency-ms %s`; `%s` with URL = SERVICE/v1/objects/bench, then S3_SINK/{bucket}/{key}"
         % (lat_ms, f["FAR_CMD"])),
        (f"1 KiB PUT latency, {conc} connections, S3 stand-in answering after {lat_ms} ms",
         f"p50 {ms(fs, 'p50_us'):.2f} ms, p99 {ms(fs, 'p99_us'):.2f} ms (p50 +{far_added:.2f} ms)",
         f"direct: p50 {ms(fd, 'p50_us'):.2f} ms, p99 {ms(fd, 'p99_us'):.2f} ms",
         "p50 added < 1 ms", verdict(far_added < 1),
         "same wrk runs"),
        (f"the same with {f['BUSY_CONC']} connections (Cloud Run's default concurrency per instance)",
         f"{float(bs['rps']):,.0f} req/s ({busy_ratio:.0f} % of direct); p50 {ms(bs, 'p50_us'):.2f} ms, "
         f"p99 {ms(bs, 'p99_us'):.2f} ms (p50 +{busy_added:.2f} ms); {bad(bs)} errors",
         f"direct: {float(bd['rps']):,.0f} req/s; p50 {ms(bd, 'p50_us'):.2f} ms, p99 {ms(bd, 'p99_us'):.2f} ms",
         "—", "—",
         "`%s`" % f["BUSY_CMD"]),
        (f"1 KiB PUT throughput, {conc} connections, {secs} s, S3 stand-in answering at once "
         "(the CPU ceiling of this machine)",
         f"{s_rps:,.0f} req/s ({ratio:.0f} % of direct, {s_rps / fw_rps * 100:.0f} % of the bare forwarder); "
         f"p50 {s50:.2f} ms, p99 {s99:.2f} ms; {bad(s)} errors",
         f"direct to s3-sink: {d_rps:,.0f} req/s, p50 {d50:.2f} ms, p99 {d99:.2f} ms; "
         f"through a bare hyper forwarder (fault-proxy) to it: {fw_rps:,.0f} req/s ({fw_rps / d_rps * 100:.0f} % of direct), "
         f"p50 {fw50:.2f} ms",
         "—", "—",
         "`%s` vs `%s`" % (f["PUT_CMD_SERVICE"], f["PUT_CMD_DIRECT"])),
        ("1 KiB PUT latency, one request at a time (%s s), S3 stand-in answering at once" % f["SEQ_SECS"],
         f"p50 {q_s50:.2f} ms, p99 {q_s99:.2f} ms (p50 +{seq_added:.2f} ms)",
         f"direct: p50 {q_d50:.2f} ms, p99 {q_d99:.2f} ms",
         "p50 added < 1 ms", verdict(seq_added < 1),
         "`%s`" % f["SEQ_CMD"]),
        ("CPU time per 1 KiB PUT (user + system, during the runs against the stand-in answering at once)",
         f"service {cpu_svc:.0f} µs (+ s3-sink {cpu_sink_via:.0f} µs)",
         f"direct: s3-sink {cpu_sink:.0f} µs",
         "—", "—", "`/proc/PID/stat` utime + stime"),
        ("AssumeRoleWithWebIdentity per 10,000 PUTs",
         f"{sts10k} ({sts_start} since the process started; {ok10k:,} answered 201)",
         "origin sample: 10,000 (one per request)",
         "one per credential lifetime (3600 s)", verdict(sts10k == 0 and sts_start <= 1 and ok10k == 10000),
         "`%s`" % f["STS_CMD"]),
        ("RSS idle (after start and `/readyz`)",
         f"VmRSS {int(f['IDLE_RSS_KB']) / 1024:.1f} MiB, VmHWM {int(f['IDLE_HWM_KB']) / 1024:.1f} MiB",
         "—", "—", "—", "`/proc/PID/status`"),
        (f"peak RSS while replicating {size_mib} MiB (fake-gcs-server → moto)",
         f"VmHWM {r_hwm:.1f} MiB (before: {float(rep['svc_idle_hwm_mib']):.1f} MiB)",
         f"curl | boto3 upload_fileobj: python peak RSS {float(rep['plain_rss_mib']):.1f} MiB",
         "< 64 MiB", verdict(r_hwm < 64),
         f"`PROFILE=release SIZE_MIB={size_mib} scripts/measure-replication.sh`"),
        (f"replication rate, {size_mib} MiB",
         f"{r_svc:.1f} MB/s ({float(rep['svc_secs']):.1f} s; {r_ratio:.0f} % of plain)",
         f"curl | boto3 upload_fileobj (8 MiB parts): {r_plain:.1f} MB/s ({float(rep['plain_secs']):.1f} s)",
         "≥ 80 % of plain", verdict(r_ratio >= 80),
         "same run"),
        ("stripped release binary",
         f"{size:,} bytes ({size / mib:.1f} MiB)", "—", "—", "—",
         "`stat -c %s target/release/gcp-aws-bridge`"),
        (f"load: {f['LOAD_CONC']} connections, {f['LOAD_SECS']} s of 1 KiB PUTs: statuses",
         f"{int(load['ok']):,} × 201, {load['other']} other, {load['errors']} transport errors; "
         f"{int(load['rps']):,} req/s, p50 {float(load['p50_ms']):.1f} ms, p99 {float(load['p99_ms']):.1f} ms",
         "—", "all 201", verdict(load_ok),
         "`hey -c %s -z %ss -m PUT -D 1k.bin -T application/octet-stream http://SERVICE/v1/objects/bench`"
         % (f["LOAD_CONC"], f["LOAD_SECS"])),
        ("load: VmRSS",
         f"before {rss_before:.1f} MiB, during max {rss_max:.1f} MiB "
         f"(first half {rss_h1:.1f}, second half {rss_h2:.1f}), after {rss_after:.1f} MiB",
         "—", "stable", verdict(rss_ok),
         "`/proc/PID/status` every 5 s (%s samples)" % load["samples"]),
        ("load: open file descriptors",
         f"before {fds_before}, during {load['fds_min']}–{load['fds_max']}, after {fds_after}",
         f"idle before any load: {f['IDLE_FDS']}", f"no growth (≤ +{margin})", verdict(fds_ok),
         "`ls /proc/PID/fd | wc -l`"),
    ]

    def esc(cell):
        return str(cell).replace("|", "\\|")

    header = "| figure | gcp-aws-bridge | baseline (same run) | target | | command |\n|---|---|---|---|---|---|\n"
    table = header + "".join("| " + " | ".join(esc(c) for c in r) + " |\n" for r in rows)
    sys.stdout.write(table)

    dirty = int(f["DIRTY"])
    doc = f"""# Benchmark results

Generated by `bench/run.sh` on {f['DATE']}; every figure below was measured in
that run, each beside its baseline from the same run. Do not edit by hand: run
`bench/run.sh` again (see `bench/README.md`).

## Machine

- CPU: {f['CPU']}, `nproc` = {f['NPROC']}
- memory (`free -h`): {f['MEM']}
- {f['KERNEL']}; {f['RUSTC']}; hey {f['HEY']}; wrk {f['WRK']}
- binary: `target/release/gcp-aws-bridge` (release profile: thin LTO, stripped,
  `panic = "abort"`), built from commit {f['COMMIT']}{' with uncommitted changes under src/' if dirty else ''}
- load average (1, 5, 15 min) before the run: {f['LOAD_BEFORE']}; after: {f['LOAD_AFTER']}

The {f['NPROC']} cores are shared by the service, the stand-ins (moto, fake-gcs-server,
metadata emulator, fault proxy, s3-sink) and the load generator, and by whatever
else ran on the machine at the time (see the load average). Figures taken against
the S3 stand-in that answers at once are therefore CPU-bound on both sides and
lower than on a dedicated host.

## Results

{table}
## How the figures were taken

- **Service configuration**: as `scripts/run-local.sh` runs it, except
  `AWS_ENDPOINT_URL_STS` = the fault proxy (in front of moto, counting
  `AssumeRoleWithWebIdentity`), `AWS_ENDPOINT_URL_S3` = moto or s3-sink (below),
  `LOG_FORMAT=json`, `RUST_LOG=warn` (per-request log lines would otherwise be
  written to the log file for every request), `AUTH_MODE=none`,
  `AWS_ROLE_DURATION_SECONDS` at its default (3600).
- **S3 endpoints for the PUT and load runs**: `s3-sink` (`testkit/src/bin/s3-sink.rs`),
  a tokio/hyper server that reads each body and answers 200 with an ETag, with no
  signature check and no storage; moto manages about 600 requests/s and would be
  the bottleneck. Two of them run:
  - one answering {lat_ms} ms after it has read the request (`--latency-ms {lat_ms}`,
    a timer, no thread held): an S3 whose capacity is not the limit but which,
    like S3, takes time to answer. AWS documents median latencies "in the tens
    of milliseconds" for small S3 requests (S3 performance guidelines, "Timeouts
    and retries for latency-sensitive applications"); {lat_ms} ms is the low end.
    The throughput and latency targets are read here: this is where the service
    sits in production, between a caller and an S3 that is milliseconds away.
  - one answering at once. Every request then costs only CPU, and the service,
    the sink and wrk share the {f['NPROC']} cores, so the ratio is one of CPU time per
    request. Even a bare hyper forwarder (`fault-proxy` injecting nothing) in
    front of the sink reaches well under 80 % of direct there (the row shows
    how far); the service also signs, checksums and answers JSON. These rows
    show the most this machine can push through the service, and its CPU cost.
  The direct baseline sends the same 1 KiB body to `s3-sink/{{bucket}}/{{key}}`
  unsigned, so the difference is everything the service does: accept and route
  the request, stream the body, CRC32C, SigV4 signing and the second HTTP hop,
  and the JSON answer.
- **Throughput and latency**: `wrk` with one thread (`bench/put.lua` sets the PUT
  body and counts statuses), {secs} s each way after a 3 s warm-up each way:
  {conc} connections against both stand-ins, and {f['BUSY_CONC']} (Cloud Run's default
  maximum concurrency per instance) against the distant one; then one connection
  (one request at a time, no queueing) against the one answering at once,
  {f['SEQ_SECS']} s each way. CPU time is read from `/proc/PID/stat` before and after
  each run.
- **Start**: `bench/startup.py` spawns the process and polls `GET /healthz` every
  0.1 ms on a fresh port; one unmeasured start first. The baseline is the same timer
  on s3-sink.
- **Cold/warm**: each of {f['COLD_STARTS']} fresh processes (STS through the fault proxy to
  moto, S3 = moto with IAM auth on): the first PUT fetches the ID token from the
  metadata emulator, calls `AssumeRoleWithWebIdentity` and then PutObject; the next
  three reuse the cached credentials and the open connection. Medians.
- **STS calls**: `GET /__counts` on the fault proxy before and after 10,000 PUTs
  through a service whose credentials were already fetched by `/readyz`.
- **Replication**: `scripts/measure-replication.sh` (release build, {size_mib} MiB of random
  bytes, fake-gcs-server → moto with IAM auth on, the same two endpoints for both
  copies). moto keeps every part in memory and verifies signatures and CRC32C in
  Python; both copies pay that. The service sends a full-object CRC32C (the
  value Cloud Storage reports for the object), which moto 5.2 would compute at
  completion from a second and third copy of the whole object; the rig's moto
  launcher (`rig/moto_server.py`, patch f) carries it from part to part
  instead, as S3 combines part checksums, so that cost does not land on one
  side only. boto3 sends its default, a CRC32 per part (a composite checksum).
- **Load**: 5 s of {f['LOAD_CONC']} connections first (so the S3 connection pool has
  grown), then the {f['LOAD_SECS']} s run; RSS and open fds sampled every 5 s, and 3 s after the
  run (fd growth allowed: {margin}).
"""
    # The CPU profile section (bench/profile-put.sh, written by hand) is kept
    # across runs.
    try:
        previous = open(out_path).read()
    except OSError:
        previous = ""
    kept = previous.find("\n## CPU per PUT")
    if kept >= 0:
        doc += previous[kept:]
    with open(out_path, "w") as fh:
        fh.write(doc)
    failed = []
    if not load_ok:
        failed.append("load: a status other than 201 or a transport error")
    if not fds_ok:
        failed.append(f"load: open fds grew from {fds_before} to {fds_after}")
    for msg in failed:
        print(f"bench: FAILED: {msg}", file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
