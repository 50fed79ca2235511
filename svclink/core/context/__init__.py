"""The request context: its value, the headers it travels as, and what an incoming one proves.

``value`` holds the context and its binding; ``outgoing`` the headers every call and event
carries (and their signing); ``incoming`` reads and verifies them on the receiving side.
"""
