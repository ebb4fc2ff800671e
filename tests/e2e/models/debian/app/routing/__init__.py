"""Scenario 4: a two-actor pipeline, router (envelope mode) then split (fan-out)."""
