#!/usr/bin/env bash
# Regenerates attention_pb2.py after an edit to attention.proto. Uses protoc 31.1
# (grpcio-tools 1.74.0), the same gencode version as TensorBoard 2.21's own
# *_pb2.py files, so it runs wherever TensorBoard does.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=$(mktemp -d)
python3 -m venv "$venv"
"$venv/bin/pip" install -q grpcio-tools==1.74.0
"$venv/bin/python" -m grpc_tools.protoc -I. --python_out=. tb_attention/proto/attention.proto
rm -rf "$venv"
