"""The edge: what answers in front of FastAPI or beside it (the hot reads, /metrics).
It sits above the capabilities it serves."""
