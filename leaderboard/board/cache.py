"""The board's Streamlit glue: one ``Board`` per store shared by every session, refreshed in the
background, and the cached dataset listing the Compare page reads.

Streamlit is imported only inside the functions that need it; ``BoardCache`` itself is plain
Python and tested without it.
"""

from __future__ import annotations

import os

import pandas as pd

from benchmark.store import default_url
from leaderboard import crops
from leaderboard.board.loading import Board, load_board

BOARD_TTL_S = 60.0
"""After this many seconds a loaded ``Board`` is refreshed in the background: new results appear
within about a minute (``$SCREENSR_BOARD_TTL`` overrides it, in seconds)."""


class BoardCache:
    """One store's ``Board``, kept in memory and refreshed in the background once stale.

    Stale-while-revalidate: only the very first read (or the first after ``clear``) waits for
    ``loader``; later reads return at once, and a read that finds the board older than ``ttl``
    starts one background reload whose result replaces it. A failed background reload keeps the
    previous board (and says so on stderr) rather than breaking pages.

    Args:
        loader: ``() -> Board`` (e.g. ``lambda: load_board(url)``).
        ttl: seconds after which the board is reloaded.
        clock: monotonic clock (tests pass a fake one).
        warm: ``(board) -> None`` run on a background reload's board before it replaces the
            current one (``Board.warm``: the default tables' rank intervals), so that no visitor
            waits for them after a refresh. A failing ``warm`` is reported and the board used as is.
    """

    def __init__(self, loader, ttl: float, clock=None, warm=None) -> None:
        import threading
        import time

        self._loader = loader
        self._warm = warm
        self.ttl = float(ttl)
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._board: Board | None = None
        self._loaded_at = 0.0
        self._refreshing: threading.Thread | None = None

    def get(self) -> Board:
        """The board: loaded now if there is none, else the current one (refreshing if stale)."""
        import threading

        board = self._board
        if board is None:
            with self._lock:  # concurrent first visitors wait for one load, not one each
                if self._board is None:
                    self._store(self._loader())
                return self._board  # type: ignore[return-value]
        if self._clock() - self._loaded_at > self.ttl:
            with self._lock:
                if self._refreshing is None or not self._refreshing.is_alive():
                    self._refreshing = threading.Thread(target=self._refresh, daemon=True)
                    self._refreshing.start()
        return board

    def wait_refresh(self, timeout: float | None = None) -> None:
        """Block until a running background reload has finished (tests, shutdown)."""
        thread = self._refreshing
        if thread is not None:
            thread.join(timeout)

    def clear(self) -> None:
        """Forget the board: the next ``get`` loads synchronously (after a submission)."""
        with self._lock:
            self._board = None

    def _store(self, board: Board) -> None:
        self._board = board
        self._loaded_at = self._clock()

    def _refresh(self) -> None:
        import sys

        try:
            board = self._loader()
        except Exception as exc:  # keep serving the previous board; the next stale read retries
            print(f"warning: refreshing the leaderboard failed, keeping the previous data: {exc}", file=sys.stderr)
            return
        if self._warm is not None:
            try:
                self._warm(board)
            except Exception as exc:  # the pages compute what is missing themselves
                print(f"warning: precomputing the leaderboard tables failed: {exc}", file=sys.stderr)
        with self._lock:
            if self._board is not None:  # a clear() meanwhile wins: the next get loads afresh
                self._store(board)


_CACHES: dict[str, BoardCache] = {}


def cached_board(url: str | None = None) -> Board:
    """The ``Board`` of ``url`` (default ``$SCREENSR_STORE``), shared by every session of this
    server process and refreshed in the background (``BoardCache``); the pages only read it."""
    target = store_url(url)
    cache = _CACHES.get(target)
    if cache is None:
        ttl = float(os.environ.get("SCREENSR_BOARD_TTL", BOARD_TTL_S))
        cache = _CACHES.setdefault(target, BoardCache(lambda: load_board(target), ttl, warm=Board.warm))
    return cache.get()


def clear_board_cache(url: str | None = None) -> None:
    """Drop the cached ``Board`` of ``url`` (all stores when None), so new scores show at once."""
    for key, cache in list(_CACHES.items()):
        if url is None or key == store_url(url):
            cache.clear()


def store_url(url: str | None = None) -> str:
    """``url`` if given, else the store the app was started on (``$SCREENSR_STORE``)."""
    return url or default_url()


def board_or_stop(url: str | None = None) -> Board:
    """The cached ``Board``; when the store cannot be read or has no scores, explain how to fix
    it on the page and stop the script (``st.stop``)."""
    import streamlit as st

    target = store_url(url)
    try:
        with st.spinner("Loading results…"):
            board = cached_board(target)
    except (FileNotFoundError, ValueError) as exc:
        st.error(f"Cannot open the results store: {exc}")
        st.stop()
    if board.scores.empty:
        st.info(
            f"The results store `{board.url}` holds no scores yet. Fill it with "
            "`screensr bench run --dataset DATASET --methods bicubic --metrics psnr,ssim,niqe "
            f"--store {board.url}` (or `screensr demo`), then reload."
        )
        st.stop()
    return board


# --------------------------------------------------------------------------- cached readers

_IMAGES: list = []  # the st.cache_resource-wrapped reader, made once per process


def cached_dataset_images(board: Board, dataset: str) -> dict[str, crops.ImageFiles]:
    """``crops.dataset_images`` behind ``st.cache_resource`` (listing a dataset folder once per TTL;
    a board's score versions and version rows are memoised on the ``Board`` itself)."""
    import streamlit as st

    if not _IMAGES:
        _IMAGES.append(st.cache_resource(ttl=BOARD_TTL_S, show_spinner=False, max_entries=16)(_images_for_cache))
    rows = board.datasets[board.datasets["name"] == dataset]
    key = tuple(rows[["root", "layout", "scale"]].astype(str).iloc[0]) if len(rows) else ()
    return _IMAGES[0](board.url, dataset, key, board.datasets)


def _images_for_cache(url: str, dataset: str, key: tuple, _datasets: pd.DataFrame) -> dict[str, crops.ImageFiles]:
    # the leading underscore keeps Streamlit from hashing the frame: (url, dataset, key) identify it
    return crops.dataset_images(_datasets, dataset)
