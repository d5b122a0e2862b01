"""`bark serve`: OpenAI's speech API over one loaded model, concurrent requests batched together.

app.py holds the routes, schema.py the request and error shapes, voices.py the names a request may
use, scheduler.py the generation thread and its batches, speech.py the response bodies,
encoders.py the audio formats, metrics.py what /metrics counts, page.html the page at GET /.
Nothing here is imported by the `bark` command until `bark serve` runs.
"""
