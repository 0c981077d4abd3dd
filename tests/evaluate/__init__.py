"""Tests of the evaluation: metrics, the report (in memory, streamed, in a browser), early guessing."""
