"""HTTP decisions: plan a call, run its flow as data, read the answer.

What belongs here: everything both HTTP drivers would otherwise decide twice (the URL,
headers, body, retries, redirects, error classes, the registry of services). Nothing here
opens a socket or sleeps; a driver sends one planned request and reports what happened.
"""
