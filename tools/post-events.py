#!/usr/bin/env python3
"""Posts an NDJSON event log to an HTTP intake the way CVAT's server ships events: JSON
arrays of up to --batch events, one request at a time, retried until answered 200.
Usage: tools/post-events.py URL FILE [--batch 50]"""
import argparse, json, sys, time, urllib.error, urllib.request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("file")
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    events = [json.loads(line) for line in open(args.file) if line.strip()]
    sent = 0
    for start in range(0, len(events), args.batch):
        body = json.dumps(events[start:start + args.batch]).encode()
        for attempt in range(100):
            try:
                req = urllib.request.Request(args.url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(min(2.0, 0.1 * (attempt + 1)))
        else:
            sys.exit("gave up posting events %d..%d" % (start, start + args.batch))
        sent += len(events[start:start + args.batch])
    print("posted %d events in %d requests" % (sent, (len(events) + args.batch - 1) // args.batch))


if __name__ == "__main__":
    main()
