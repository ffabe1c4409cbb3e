#!/usr/bin/env python3
"""Measures a 3-replica cluster on 127.0.0.1, bounded in count and time:
  1. 1,000 groups posted to all replicas at once -> notifications received (ideal: 1,000);
  2. 10,000 silences created on replica 0 -> seconds until all are listed on replicas 1 and 2.
Usage: scripts/cluster-measure.py <tocsin or alertmanager binary> [--alertmanager] [--slow-sink]
Stops every process it started. Prints one line per figure."""
import json, os, subprocess, sys, tempfile, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = sys.argv[1]
AM = "--alertmanager" in sys.argv
GROUPS, SILENCES = 1000, 10000
received = []
arrivals = []

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        received.append(body["groupLabels"].get("alertname"))
        arrivals.append((time.time(), self.path))
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass

class Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections when 1,000 groups are sent at once; with
    # --slow-sink it is kept, which makes sends straggle past the peer timeout (slow receiver).
    request_queue_size = 5 if "--slow-sink" in sys.argv else 4096
    daemon_threads = True

sink = Server(("127.0.0.1", 0), Sink)
threading.Thread(target=sink.serve_forever, daemon=True).start()
cfg = f"""route:
  receiver: s
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5m
receivers:
- name: s
  webhook_configs:
  - url: http://127.0.0.1:{sink.server_port}/REPLICA
"""
tmp = tempfile.mkdtemp()
for i in range(3):
    open(f"{tmp}/am{i}.yml", "w").write(cfg.replace("REPLICA", f"r{i}"))
procs = []
def post(url, data):
    req = urllib.request.Request(url, json.dumps(data).encode(), {"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=30).read()
def get(url):
    return json.loads(urllib.request.urlopen(url, timeout=30).read())
try:
    for i in range(3):
        args = [BIN, f"--config.file={tmp}/am{i}.yml", f"--storage.path={tmp}/d{i}",
                f"--web.listen-address=127.0.0.1:{19593 + i}", f"--cluster.listen-address=127.0.0.1:{19694 + i}",
                "--cluster.settle-timeout=3s"]
        if not AM:
            args.append(f"--cluster.peer-name=r{i}")
        if i:
            args.append("--cluster.peer=127.0.0.1:19694")
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if all(len(get(f"http://127.0.0.1:{19593 + i}/api/v2/status")["cluster"]["peers"]) == 3 for i in range(3)):
                break
        except Exception:
            pass
        time.sleep(0.2)
    time.sleep(4)
    alerts = [{"labels": {"alertname": f"G{i:04}"}} for i in range(GROUPS)]
    posted = time.time()
    for i in range(3):
        post(f"http://127.0.0.1:{19593 + i}/api/v2/alerts", alerts)
    # group_wait + 2 x 15s peer_timeout + margin; a slow sink needs longer for the retries.
    time.sleep(120 if "--slow-sink" in sys.argv else 45)
    print(f"groups={GROUPS} notifications={len(received)} extra={len(received) - len(set(received))}")
    by = {}
    for t, path in arrivals:
        by.setdefault(path, []).append(t - posted)
    for path, ts in sorted(by.items()):
        print(f"  {path}: {len(ts)} notifications, first at +{min(ts):.1f}s, last at +{max(ts):.1f}s")
    now = time.time()
    start_iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    end_iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now + 7200))
    t0 = time.time()
    for i in range(SILENCES):
        post("http://127.0.0.1:19593/api/v2/silences", {"matchers": [{"name": "instance", "value": f"h{i}", "isRegex": False}],
             "startsAt": start_iso, "endsAt": end_iso, "createdBy": "bench", "comment": "c"})
    created = time.time() - t0
    deadline = time.time() + 180
    while time.time() < deadline:
        if all(len(get(f"http://127.0.0.1:{19593 + i}/api/v2/silences")) >= SILENCES for i in (1, 2)):
            break
        time.sleep(0.2)
    print(f"silences={SILENCES} create_seconds={created:.1f} visible_on_all_after_last_create={time.time() - t0 - created:.2f}s")
finally:
    for p in procs:
        p.kill()
    sink.shutdown()
