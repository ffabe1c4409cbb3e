"""The event history's CPU cost (docs/performance.md): server CPU per ingested alert with the
history off and on, a fresh server per run, N distinct alerts (tocsin-bench's shape) POSTed in
batches of 100 over one keep-alive connection; each thread's CPU read from /proc before and after.

    python3 scripts/event_cost.py [alerts=100000] [pairs=3]     (TOCSIN=path of the binary)

Binds 127.0.0.1:19094 and writes under /tmp/event_cost; every run stops its server."""
import http.client, json, os, shutil, subprocess, sys, time, urllib.request

BIN = os.environ.get("TOCSIN", "target/release/tocsin")
CONFIG = "route:\n  receiver: blackhole\n  group_by: [alertname, cluster]\n  group_wait: 1h\n  group_interval: 1h\n  repeat_interval: 24h\nreceivers:\n- name: blackhole\n"
N, B = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, 100
ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
bodies = [json.dumps([{"labels": {"alertname": f"Alert{i % 500}", "cluster": f"c{i % 20}", "instance": f"host-{i}:9100", "job": "node", "severity": "warning"},
                       "annotations": {"summary": f"instance host-{i} is unhappy", "runbook": "https://runbooks.example/node"},
                       "endsAt": ends, "generatorURL": "http://prometheus:9090/graph?g0.expr=up"} for i in range(s, s + B)]).encode()
          for s in range(0, N, B)]
tick = os.sysconf("SC_CLK_TCK")

def threads(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        f = st[st.rindex(")") + 2:].split()
        out[t] = (comm, (int(f[11]) + int(f[12])) / tick)
        out[t + "k"] = (comm + " (kernel)", int(f[12]) / tick)
    return out

def run(events):
    d = "/tmp/event_cost"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    open(f"{d}/am.yml", "w").write(CONFIG)
    args = [BIN, f"--config.file={d}/am.yml", f"--storage.path={d}/data", "--web.listen-address=127.0.0.1:19094", "--cluster.listen-address="]
    if not events:
        args.append("--events.max-size-bytes=0")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen("http://127.0.0.1:19094/-/ready").read()
            break
        except Exception:
            time.sleep(0.05)
    before = threads(p.pid)
    c = http.client.HTTPConnection("127.0.0.1", 19094)
    t0 = time.time()
    for b in bodies:
        c.request("POST", "/api/v2/alerts", body=b, headers={"content-type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    wall = time.time() - t0
    time.sleep(1.0)  # the writer catches up
    after = threads(p.pid)
    p.terminate(); p.wait()
    by = {}
    for t, (comm, cpu) in after.items():
        by[comm] = by.get(comm, 0) + cpu - before.get(t, (comm, 0))[1]
    return wall, by

res = {False: [], True: []}
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 3):
    for ev in (False, True):
        wall, by = run(ev)
        res[ev].append(by)
        print(("on " if ev else "off"), f"wall {wall:.2f}s", {k: round(v, 3) for k, v in sorted(by.items())}, flush=True)
for ev in (False, True):
    tot = sorted(sum(v for k, v in b.items() if not k.endswith("(kernel)")) for b in res[ev])
    print("events", "on " if ev else "off", "server CPU s per 100k alerts (median):", round(tot[len(tot) // 2] * 100_000 / N, 3))
