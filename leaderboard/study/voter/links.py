"""The links that open the voting app: one per participant token, or one per open study.

The voting app has a single page, so a link is its root address with a query: ``?token=...``
(personal) or ``?study=NAME`` (open enrolment). Links of the previous form
(``.../study_vote?token=...``) still work: the app answers every path with its one page.

Example:
    >>> vote_link("https://votes.example.org/", "tok en")
    'https://votes.example.org/?token=tok%20en'
    >>> enrolment_link("http://localhost:8502", "vosr-ms")
    'http://localhost:8502/?study=vosr-ms'
"""

from __future__ import annotations

from urllib.parse import quote

DEFAULT_PORT = 8502  # next to the results board's 8501, so both can run on one host
DEFAULT_URL = f"http://localhost:{DEFAULT_PORT}"


def vote_link(base_url: str, token: str) -> str:
    """The personal voting link for ``token`` on the voting app at ``base_url``."""
    return f"{base_url.rstrip('/')}/?token={quote(token, safe='')}"


def enrolment_link(base_url: str, study: str) -> str:
    """The open-enrolment link of ``study`` (only studies with ``open_enrolment: true`` accept it)."""
    return f"{base_url.rstrip('/')}/?study={quote(study, safe='')}"
