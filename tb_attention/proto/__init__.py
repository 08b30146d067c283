"""The storage contract (attention.proto) and its generated attention_pb2 module (regenerate.sh rebuilds it)."""
