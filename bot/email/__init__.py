"""E-mail (SMTP): the briefings, handover digests and alerts of partners who do not live in chat.

An outside world like the chat platforms, but one that only receives: the outbox rows of rooms `email:<address>`
(already rendered for the address's clearance by templates/mail.py) become MIME messages (`message.py`) sent
through the configured relay (`adapter.py`, aiosmtplib). Nothing here turns anything into chat messages.
"""
