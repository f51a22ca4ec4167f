"""The web side: the HTTP app and everything a browser or an API client reaches.

``app`` builds the application; ``api`` (one router per resource), ``console``
(operators), ``admin``, ``practitioner`` (her own page) and ``responder`` (the
``/r/`` links police open) serve it; ``auth``, ``csrf`` and ``bodylimit`` guard
it; ``report`` and ``stats_totals`` build the documents and figures it shows.
"""
