"""A local stand-in for the remote TMDB v3 API: recorded-shape JSON, with scripted 429s, 500s, slow and bad bodies."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

KEY = "0123456789abcdef0123456789abcdef"  # v3 keys are 32 hex characters

REVIEW_POS = "A wonderful, beautiful film. I loved every minute, truly great!"
REVIEW_NEG = "Terrible and boring. I hated it, an awful waste of time."
REVIEW_JM = "Great fun, a good adventure for the whole family."


def movie(tmdb_id: int, title: str, **fields: Any) -> dict[str, Any]:
    """A /movie/{id}?append_to_response=credits,reviews body in TMDB's v3 shape."""
    doc = {"adult": False, "id": tmdb_id, "imdb_id": f"tt{tmdb_id:07d}", "title": title, "original_language": "en",
           "genres": [], "budget": 0, "revenue": 0, "runtime": 0, "popularity": 1.0, "vote_average": 0.0,
           "vote_count": 0, "release_date": "", "credits": {"id": tmdb_id, "cast": [], "crew": []},
           "reviews": {"id": tmdb_id, "page": 1, "results": [], "total_pages": 0, "total_results": 0}}  # fmt: skip
    doc.update(fields)
    return doc


def review(rid: str, author: str, content: str, created_at: str) -> dict[str, Any]:
    return {"id": rid, "author": author, "author_details": {"username": author, "rating": None},
            "content": content, "created_at": created_at, "updated_at": created_at,
            "url": f"https://www.themoviedb.org/review/{rid}"}  # fmt: skip


MOVIES: dict[int, dict[str, Any]] = {
    862: movie(
        862, "Toy Story", genres=[{"id": 16, "name": "Animation"}, {"id": 35, "name": "Comedy"}],
        budget=30000000, revenue=373554033, runtime=81, popularity=21.946, vote_average=7.97, vote_count=17000,
        release_date="1995-10-30",
        credits={"id": 862, "cast": [{"id": 12898, "name": "Tim Allen", "character": "Buzz", "order": 1},
                                     {"id": 31, "name": "Tom Hanks", "character": "Woody", "order": 0},
                                     {"id": 7167, "name": "Don Rickles", "character": "Mr. Potato Head", "order": 2}],
                 "crew": [{"id": 1, "name": "Bonnie Arnold", "job": "Producer", "department": "Production"},
                          {"id": 7879, "name": "John Lasseter", "job": "Director", "department": "Directing"}]},
        reviews={"id": 862, "page": 1, "total_pages": 1, "total_results": 2,
                 "results": [review("r-ts1", "ana", REVIEW_POS, "2017-02-13T23:16:19.538Z"),
                             review("r-ts2", "bob", REVIEW_NEG, "2017-02-20T10:00:00.000Z")]},
    ),
    8844: movie(
        8844, "Jumanji", genres=[{"id": 12, "name": "Adventure"}, {"id": 14, "name": "Fantasy"}, {"id": 10751}],
        budget=65000000, revenue=262797249, runtime=104, popularity=17.0, vote_average=7.2, vote_count=10000,
        release_date="1995-12-15",
        credits={"id": 8844, "cast": [{"id": 2157, "name": "Robin Williams", "character": "Alan", "order": 0}],
                 "crew": [{"id": 4945, "name": "Joe Johnston", "job": "Director", "department": "Directing"}]},
        reviews={"id": 8844, "page": 1, "total_pages": 1, "total_results": 1,
                 "results": [review("r-jm1", "cy", REVIEW_JM, "2018-03-05T08:30:00.000Z")]},
    ),
    11862: movie(11862, "Father of the Bride Part II", genres=[{"id": 35, "name": "Comedy"}], runtime=106,
                 popularity=8.5, vote_average=6.2, vote_count=600, release_date="1995-12-08"),
}  # fmt: skip

# movieId -> tmdbId as in MovieLens links.csv; 15602 is unknown to TMDB (404), 31357 answers with a broken body
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n2,0113497,8844\n3,0113228,15602\n4,0114885,31357\n5,0113041,11862\n6,0113277,\n"
MOVIES_CSV = ("movieId,title,genres\n1,Toy Story (1995),Animation|Children|Comedy\n2,Jumanji (1995),Adventure|Children\n"
              "3,Grumpier Old Men (1995),Comedy|Romance\n4,Waiting to Exhale (1995),Comedy|Drama\n"
              "5,Father of the Bride Part II (1995),Comedy\n6,Heat (1995),Action|Crime\n")  # fmt: skip
SCRIPT = {15602: ["404"] * 10, 31357: ["malformed"] * 10}


class FakeTmdb:
    """Serves ``movies`` on loopback; ``script[id]`` lists what the next requests for ``id`` get.

    Actions: ``ok``, ``404``, ``500``, ``429:<retry-after seconds>``, ``slow:<seconds>`` (then ok),
    ``malformed`` (not JSON), ``badshape`` (JSON without a title). Every request is recorded with its arrival time.
    With ``echo_url``, every JSON body also echoes the request URL (``request_url``), and broken ones end with it.
    """

    def __init__(self, movies: dict[int, dict] | None = None, script: dict[int, list[str]] | None = None,
                 key: str = KEY, echo_url: bool = False) -> None:  # fmt: skip
        self.movies = MOVIES if movies is None else movies
        self.echo_url = echo_url  # bodies then carry the request URL, key included (as some proxies do)
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.key = key
        self.requests: list[tuple[float, int | None, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/3"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeTmdb:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def counts(self) -> Counter:
        with self.lock:
            return Counter(i for _, i, _, _ in self.requests)

    def times(self, tmdb_id: int | None = None) -> list[float]:
        with self.lock:
            return [t for t, i, _, _ in self.requests if tmdb_id is None or i == tmdb_id]

    def _next(self, tmdb_id: int) -> str:
        with self.lock:
            queue = self.script.get(tmdb_id)
            return queue.pop(0) if queue else "ok"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                arrived = time.monotonic()
                url = urlparse(self.path)
                parts = url.path.rstrip("/").split("/")
                tmdb_id = int(parts[-1]) if parts[-1].isdigit() and parts[-2] == "movie" else None
                with fake.lock:
                    fake.requests.append((arrived, tmdb_id, self.path, dict(self.headers)))
                query = parse_qs(url.query)
                auth = self.headers.get("Authorization", "")
                if query.get("api_key") != [fake.key] and auth != f"Bearer {fake.key}":
                    return self._send(401, {"success": False, "status_code": 7, "status_message": "Invalid API key"})
                if tmdb_id is None or query.get("append_to_response") != ["credits,reviews"]:
                    return self._send(400, {"status_message": "bad request"})
                action = fake._next(tmdb_id)
                if action.startswith("slow:"):
                    time.sleep(float(action.split(":")[1]))
                    action = "ok"
                if action == "ok" and tmdb_id in fake.movies:
                    return self._send(200, fake.movies[tmdb_id])
                if action in ("ok", "404"):
                    return self._send(404, {"success": False, "status_code": 34, "status_message": "not found"})
                if action == "500":
                    return self._send(500, {"status_message": "Internal error"})
                if action.startswith("429:"):
                    return self._send(429, {"status_code": 25, "status_message": "Too many requests"},
                                      {"Retry-After": action.split(":")[1]})  # fmt: skip
                if action == "malformed":
                    return self._send(200, b'{"id": %d, "title": "Broken' % tmdb_id)
                if action == "badshape":
                    return self._send(200, {"id": tmdb_id, "overview": "no title here"})
                raise AssertionError(action)

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                if fake.echo_url:
                    echoed = f"https://api.themoviedb.org{self.path}"
                    body = body + echoed.encode() if isinstance(body, bytes) else {**body, "request_url": echoed}
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """Most requests the server saw in any one window of ``window`` seconds (its own clock)."""
    ordered, best, lo = sorted(stamps), 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def write_inputs(folder: Path) -> tuple[Path, Path]:
    """movies.csv and links.csv side by side, as in a MovieLens download."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_text(MOVIES_CSV)
    (folder / "links.csv").write_text(LINKS)
    return folder / "movies.csv", folder / "links.csv"
