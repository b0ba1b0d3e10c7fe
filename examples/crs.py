#!/usr/bin/env python3
"""A small conversational recommender to test usersim against.

Retrieval over a MovieLens-style catalog (CSV with id or movieId, title,
genres, keywords): every item is scored by the words of everything the user
said (genre names and their synonyms, keywords, title words); the best items
not recommended before in the conversation are offered, two at a time.
Deterministic: the same messages give the same answer. Python standard
library only.

It speaks usersim's system protocol (README, "Testing your own system"):

    python3 examples/crs.py CATALOG.csv              # stdio: one JSON per line
    python3 examples/crs.py CATALOG.csv --http 8765  # POST http://127.0.0.1:8765/

--log FILE appends every request as received (one JSON per line), to see
exactly what the system was sent.
"""

import argparse
import csv
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOP = set(
    "a an and the of to in on for with me my i you it is are be some something "
    "like want watch movie movies film films good great any anything maybe "
    "please can could would what about that this one more else other not no "
    "yes hi hello hey thanks thank really just so do dont don't have has".split()
)
SYNONYMS = {
    "funny": "comedy", "laugh": "comedy", "comedies": "comedy",
    "scary": "horror", "spooky": "horror", "frightening": "horror",
    "romantic": "romance", "love": "romance",
    "animated": "animation", "cartoon": "animation",
    "kids": "children", "family": "children",
    "action-packed": "action", "explosions": "action",
    "space": "sci-fi", "future": "sci-fi", "aliens": "sci-fi", "scifi": "sci-fi",
    "detective": "mystery", "murder": "crime", "gangster": "crime",
    "suspense": "thriller", "tense": "thriller",
    "sad": "drama", "emotional": "drama",
    "war": "war", "western": "western", "cowboy": "western",
    "musical": "musical", "songs": "musical", "documentary": "documentary",
}
PER_TURN = 2


def words(text):
    return [w for w in re.findall(r"[a-z0-9'-]+", text.lower()) if w not in STOP]


def load(path):
    items = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            item_id = row.get("id") or row.get("movieId")
            title = row["title"].strip()
            genres = [g.lower() for g in row.get("genres", "").split("|") if g]
            keywords = set()
            for k in row.get("keywords", "").split("|"):
                keywords.update(words(k))
            title_words = set(words(re.sub(r"\(\d{4}\)\s*$", "", title)))
            items.append((item_id, title, genres, keywords, title_words))
    return items


class Recommender:
    def __init__(self, items):
        self.items = items
        self.by_title = {it[1].lower(): it[0] for it in items}

    def offered(self, messages):
        """Items named in the system's earlier messages."""
        seen = set()
        for m in messages:
            if m.get("role") == "assistant":
                text = m.get("content", "").lower()
                for title, item_id in self.by_title.items():
                    if title in text:
                        seen.add(item_id)
        return seen

    def answer(self, req):
        messages = req.get("messages", [])
        said = " ".join(m.get("content", "") for m in messages if m.get("role") == "user")
        ws = words(said)
        genres = {SYNONYMS.get(w, w) for w in ws}
        wset = set(ws)
        seen = self.offered(messages)
        scored = []
        for pos, (item_id, title, igenres, keywords, title_words) in enumerate(self.items):
            if item_id in seen:
                continue
            score = 2 * sum(1 for g in igenres if g in genres)
            score += len(keywords & wset) + 3 * len(title_words & wset)
            if score > 0:
                scored.append((-score, pos, item_id, title))
        scored.sort()
        picks = scored[:PER_TURN]
        last = messages[-1]["content"].lower() if messages else ""
        answer = {"id": req.get("id")}
        if re.search(r"\b(bye|goodbye)\b", last):
            answer.update(text="Enjoy the movie, goodbye!", items=[], end=True)
        elif not picks:
            answer.update(text="What kind of movie are you in the mood for? A genre, an actor, a mood?", items=[])
        else:
            titles = " or ".join(p[3] for p in picks)
            answer.update(text=f"You might like {titles}.", items=[p[2] for p in picks])
        return answer


def log_request(path, line):
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")


def serve_stdio(rec, log):
    for line in sys.stdin:
        if not line.strip():
            continue
        log_request(log, line)
        out = rec.answer(json.loads(line))
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def serve_http(rec, port, log):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            log_request(log, body.decode("utf-8"))
            try:
                out = json.dumps(rec.answer(json.loads(body))).encode()
                self.send_response(200)
            except (ValueError, KeyError) as e:
                out = json.dumps({"error": str(e)}).encode()
                self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"crs listening on http://127.0.0.1:{server.server_port}/", file=sys.stderr, flush=True)
    server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("catalog", help="catalog CSV (id or movieId, title, genres, keywords)")
    p.add_argument("--http", type=int, metavar="PORT", help="serve HTTP on 127.0.0.1:PORT instead of stdio")
    p.add_argument("--log", metavar="FILE", help="append every request received to FILE")
    a = p.parse_args()
    rec = Recommender(load(a.catalog))
    if a.http is not None:
        serve_http(rec, a.http, a.log)
    else:
        serve_stdio(rec, a.log)


if __name__ == "__main__":
    main()
