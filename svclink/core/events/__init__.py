"""Event decisions: the envelope, messages, topology, publishing and consuming.

What belongs here: what to declare and in which order, how an event is encoded and
decoded, what a publish outcome means, and what happens to a delivery (ack, delay,
dead-letter). The AMQP drivers only perform the I/O these modules describe.
"""
