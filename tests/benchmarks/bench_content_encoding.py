"""Issue 12's open question: serve a stored layer's zstd bytes to the browser
with Content-Encoding (the browser inflates), or inflate in the plugin and
serve raw bytes (what the plugin does)? Not a test.

    .venv/bin/python tests/benchmarks/bench_content_encoding.py [--reps 15]

One HTTP server in this process serves the same layer three ways; headless
Chromium fetches each (a new URL every time: no browser cache) and times
fetch() to the ArrayBuffer in the page, alternating the ways rep by rep:
- inflate: the server inflates the stored zstd bytes for the request (the
  plugin's cold path, a layer not in its cache) and sends raw bytes;
- cached: the server sends raw bytes it holds (the plugin's warm path);
- zstd: the server sends the stored bytes with Content-Encoding: zstd.
Over loopback, then through Chromium's network emulation of a 100 Mbit/s
link (5 ms) and a 20 Mbit/s one (20 ms), as a remote TensorBoard reached
through an SSH tunnel is (the browser sees localhost there, so it offers zstd).
Layers: 12 heads of random softmax rows, uint8, at 128 and 512 tokens,
compressed as the writer does (codec.compress). Also asks Chromium which
encodings it accepts from 127.0.0.1 and from this machine's own non-loopback
address: Chromium offers zstd (and br) to localhost and https only, so a
TensorBoard reached over plain http by address gets no zstd at all.
Medians, with the load average. Writes tests/benchmarks/results/content-encoding.md.
"""
import argparse
import http.server
import os
import socket
import statistics
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import numpy as np  # noqa: E402
from synthetic import softmax_attention  # noqa: E402
from tb_attention import codec  # noqa: E402


def own_address():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: picks the outgoing interface
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "content-encoding.md"))
    args = parser.parse_args()
    layers = {}
    for T in (128, 512):
        raw = np.rint(softmax_attention(1, 12, T)[0] * 255).astype(np.uint8).tobytes()
        packed, compression = codec.compress(raw)
        assert compression == codec.attention_pb2.ZSTD
        layers[T] = (raw, packed)
    accepted = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in separate writes: with Nagle's algorithm
        # a small last segment waited 40 ms for the browser's delayed ACK
        disable_nagle_algorithm = True

        def do_GET(self):
            path = self.path.split("?")[0]
            accepted[self.headers.get("Host", "").split(":")[0]] = self.headers.get("Accept-Encoding")
            headers = {"Cache-Control": "no-store"}
            if path == "/":
                body, kind = b"<!doctype html><title>bench</title>", "text/html"
            elif path.count("/") != 2:
                self.send_error(404)
                return
            else:
                _, how, T = path.split("/")
                raw, packed = layers[int(T)]
                kind = "application/octet-stream"
                if how == "inflate":
                    body = codec._zstd_decompressor().decompress(packed)
                elif how == "cached":
                    body = raw
                else:
                    body, headers["Content-Encoding"] = packed, "zstd"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    from playwright.sync_api import sync_playwright
    links = {"loopback": None, "100 Mbit/s, 5 ms": (100e6 / 8, 5), "20 Mbit/s, 20 ms": (20e6 / 8, 20)}
    times = {(link, how, T): [] for link in links for how in ("inflate", "cached", "zstd") for T in layers}
    loads = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        address = own_address()
        if address:
            page.goto("http://%s:%d/" % (address, port))
        page.goto("http://127.0.0.1:%d/" % port)
        timed = """async (url) => { const t0 = performance.now(); const r = await fetch(url);
                   const b = await r.arrayBuffer(); return [performance.now() - t0, b.byteLength]; }"""
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        n = 0
        for link, shape in links.items():  # a slow link as an SSH tunnel to a remote TensorBoard is
            cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": shape[1] if shape else 0,
                "downloadThroughput": shape[0] if shape else -1, "uploadThroughput": -1})
            for rep in range(args.reps + 1):  # the first round warms up
                for T in layers:
                    for how in ("inflate", "cached", "zstd"):
                        n += 1
                        ms, size = page.evaluate(timed, "/%s/%d?n=%d" % (how, T, n))
                        assert size == len(layers[T][0]), (how, T, size)
                        if rep:
                            times[(link, how, T)].append(ms)
                loads.append(os.getloadavg()[0])
        browser.close()
    server.shutdown()
    lines = ["# Content-Encoding: zstd to the browser, or inflate in the plugin (bench_content_encoding.py)", "",
             "Chromium %s; %d reps, medians (ms from fetch() to the ArrayBuffer); load %.1f-%.1f." % (
                 "headless", args.reps, min(loads), max(loads)), "",
             "| link (Chromium's network emulation) | tokens | raw bytes | zstd bytes | inflate per request, "
             "raw sent | raw from a cache | zstd sent, browser inflates |", "|---|---|---|---|---|---|---|"]
    for link in links:
        for T, (raw, packed) in layers.items():
            lines.append("| %s | %d | %d | %d | %.1f | %.1f | %.1f |" % (
                link, T, len(raw), len(packed), *(statistics.median(times[(link, how, T)])
                                                  for how in ("inflate", "cached", "zstd"))))
    lines += ["", "Accept-Encoding Chromium sent, by host: " + "; ".join(
        "%s: %s" % (host, enc) for host, enc in sorted(accepted.items()))]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
