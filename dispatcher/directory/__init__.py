"""The directory side: who is registered, where they are, and who must be told.

``loader`` reads and checks the directory file (``entry``: one entry alone;
``texts``: what an administrator reads), ``snapshot`` is the in-memory copy the
hot path reads, ``geocoding`` and ``communes`` turn addresses and fixes into
places at registration, ``location`` decides where she is, ``routing`` and
``fallback`` decide which convention and which people are alerted.
"""
