"""The user page (``/users/{id}``): why a user gets their list, as one self-contained HTML page (no CDN, no JS)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cinematch.serving.charts import BLUE, GREY, empty_chart, esc, fmt_pct, grouped_bars
from cinematch.web.dashboard import fmt_value, html_table, search_form, style, template
from cinematch.web.schemas import UserProfileResponse

__all__ = ["GENRES_PLOTTED", "message_page", "render"]

GENRES_PLOTTED = 8  # the user's largest genres; the JSON holds every genre


def _day(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d}" if value is not None else "–"


def _minute(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "–"


def genre_plot(profile: UserProfileResponse) -> str:
    """The user's genre shares next to everyone's, for the user's largest genres."""
    title = f"Genre mix of user {profile.user_id} against every user"
    mix = [g for g in profile.genre_mix if g.n_ratings > 0][:GENRES_PLOTTED]
    if not mix:
        return empty_chart(title, "no rated movie with a genre yet")
    return grouped_bars(
        title,
        [g.genre for g in mix],
        [
            (f"user {profile.user_id}", [g.share for g in mix], BLUE),
            ("every user", [g.population_share for g in mix], GREY),
        ],
        fmt=fmt_pct,
        rotate=len(mix) > 5,
    )


def _top_table(profile: UserProfileResponse) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("rank", "title", "genres", "score", "because you rated"))
    rows = []
    for item in profile.recommendations.items:
        why = "; ".join(b.title for b in item.because) or "–"
        score = f"{item.score:.3f}" if item.score is not None else "–"
        rows.append(f'<tr class="rec" data-movie-id="{item.movie_id}"><td>{item.rank}</td>'
                    f'<td class="title">{esc(item.title)}</td><td>{esc(", ".join(item.genres))}</td>'
                    f'<td>{score}</td><td class="why">{esc(why)}</td></tr>')  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _recent_table(profile: UserProfileResponse) -> str:
    if not profile.recent_ratings:
        return f'<p class="muted">User {profile.user_id} has no ratings yet.</p>'
    return html_table(
        ["title", "genres", "rating", "date", "batch"],
        [[r.title, ", ".join(r.genres), f"{r.rating:g}", _day(r.rated_at), r.batch_id] for r in profile.recent_ratings],
    )


def _lineage(profile: UserProfileResponse) -> str:
    recs = profile.recommendations
    rows = [
        ("model version", recs.model_version or "none yet (no champion)"),
        ("list", "fallback (popular, recent movies)" if recs.fallback else "personal"),
        (f"trained on ({len(recs.batch_ids)} batches)", ", ".join(recs.batch_ids) or "–"),
        ("list computed at", _minute(recs.generated_at)),
        ("serving views", recs.views_version),
    ]
    body = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def render(profile: UserProfileResponse) -> str:
    """The whole user page for one profile document."""
    recs = profile.recommendations
    cards: list[tuple[str, Any]] = [
        ("ratings", f"{profile.n_ratings:,}"),
        ("mean rating", fmt_value(profile.avg_rating, 2)),
        ("first rating", _day(profile.first_rated_at)),
        ("last rating", _day(profile.last_rated_at)),
        ("list", "fallback" if recs.fallback else "personal"),
        ("model", recs.model_version or "none yet"),
    ]
    kind = "Fallback list" if recs.fallback else "Top 10"
    return template("user.html").substitute(
        style=style(),
        search=search_form(str(profile.user_id)),
        user_id=profile.user_id,
        views_version=esc(profile.views_version),
        note_class="note fallback" if recs.fallback else "note",
        explanation=esc(profile.explanation),
        cards="".join(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>' for k, v in cards
        ),
        list_title=f"{kind} for user {profile.user_id}",
        top_table=_top_table(profile),
        genre_plot=genre_plot(profile),
        lineage=_lineage(profile),
        recent_table=_recent_table(profile),
        n_recent=len(profile.recent_ratings),
    )


def message_page(title: str, message: str, value: str = "") -> str:
    """A short page (unknown user, not ready) that keeps the search box, so the next id is one step away."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>CineMatch · {esc(title)}</title>'
            f'<style>{style()}</style></head><body><header><h1><a href="/">CineMatch</a></h1>'
            f'<span class="sub">{esc(title)}</span>{search_form(value)}</header>'
            f'<main><p class="note fallback" id="message">{esc(message)}</p></main></body></html>')  # fmt: skip
