"""Whole-platform suites from an attacker's side, across every route: hostile input and
attacks on authentication."""
