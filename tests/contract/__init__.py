"""Whole-platform suites that hold every route to a document: the spec's examples, the
OpenAPI schema."""
