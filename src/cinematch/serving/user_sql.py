"""The ``select`` of the per-user serving views behind the user page (``/users/{id}``), run at publish time.

Tables of a views file (besides those of :mod:`cinematch.serving.view_sql`):

- ``user_summary``       one row per known user: ratings count, mean, first and last rating time. A user is known
                         when they have a rating in ``silver.ratings`` or a row in ``silver.users`` (viewing data;
                         those users may have no rating yet: a cold start).
- ``user_ratings``       every user's ``RECENT_RATINGS`` newest ratings (movie, rating, time, batch), newest first
                         (``position`` 1 = newest); titles and genres come from ``movie_details``.
- ``user_genres``        per user and genre over the whole history: ratings, mean rating and ``share`` = the genre's
                         part of the user's genre-tagged ratings (a movie with two genres counts once for each, so
                         the shares of a user sum to 1).
- ``population_genres``  the same per genre over every user (``share`` sums to 1), summed from ``user_genres``.

Every table is sorted by ``user_id`` so a point lookup reads one DuckDB row group, not the table.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECENT_RATINGS", "user_view_sql"]

RECENT_RATINGS = 20  # the user page shows the newest ratings; older ones only count in the genre mix


def _recent_ratings_sql(top_n_aggregate: bool) -> str:
    """Every user's ``RECENT_RATINGS`` newest ratings, by a window over each user's ratings.

    With DuckDB's top-n aggregate (``max(x, n)``) the window only sees the ratings at or after the user's n-th newest
    time (ties included, so the movie-id tie-break is the window's): at 25M ratings 4.0 s -> 1.7 s, the same rows.
    PostgreSQL has no such aggregate and windows over all of them.
    """
    window = "row_number() over (partition by r.user_id order by r.rated_at desc, r.movie_id desc)"
    cut = (
        f"""join (select user_id, list_min(max(rated_at, {RECENT_RATINGS})) as since
                  from silver.ratings group by user_id) c
                on r.user_id = c.user_id and r.rated_at >= c.since"""
        if top_n_aggregate
        else ""
    )
    return f"""select r.user_id, cast({window} as integer) as position, r.movie_id, r.rating, r.rated_at, r.batch_id
               from silver.ratings r {cut}
               qualify position <= {RECENT_RATINGS}
               order by r.user_id, position"""


def user_view_sql(alias: str, has_users: bool, top_n_aggregate: bool = False) -> dict[str, tuple[str, list[Any]]]:
    """One ``select`` per user view; ``population_genres`` reads ``user_genres`` of the file being written.
    ``top_n_aggregate``: the warehouse is DuckDB (see ``_recent_ratings_sql``)."""
    rated = """select user_id, count(*) as n_ratings, avg(rating) as avg_rating, min(rated_at) as first_rated_at,
                      max(rated_at) as last_rated_at
               from silver.ratings group by user_id"""
    summary = (
        f"""with rated as ({rated}), viewers as (select distinct user_id from silver.users)
            select coalesce(r.user_id, u.user_id) as user_id, coalesce(r.n_ratings, 0) as n_ratings, r.avg_rating,
                   r.first_rated_at, r.last_rated_at
            from rated r full outer join viewers u on r.user_id = u.user_id
            order by 1"""
        if has_users
        else f"select * from ({rated}) as rated order by user_id"
    )
    return {
        "user_summary": (summary, []),
        # ids only, sorted: titles and genres are joined from movie_details when a user is read (sorting the wide
        # rows cost as much again as the window at 5M ratings)
        "user_ratings": (_recent_ratings_sql(top_n_aggregate), []),
        "user_genres": (
            # explode the (small) catalogue, not the ratings, then one hash join and one aggregation by a small
            # integer genre id, named afterwards (grouping by the genre's text cost a third more at 25M ratings)
            # (a genre listed twice for one movie counts once; PostgreSQL has no list_distinct)
            """with movie_genres as (
                    select distinct movie_id, genre from (select movie_id, unnest(genres) as genre from silver.movies) g),
                names as (
                    select genre, cast(row_number() over (order by genre) as smallint) as genre_id
                    from (select distinct genre from movie_genres) d),
                movie_genre_ids as (select g.movie_id, n.genre_id from movie_genres g join names n using (genre)),
                counts as (
                    select r.user_id, g.genre_id, count(*) as n_ratings, avg(r.rating) as avg_rating
                    from silver.ratings r join movie_genre_ids g using (movie_id)
                    group by r.user_id, g.genre_id)
                select c.user_id, n.genre, c.n_ratings, c.avg_rating,
                       c.n_ratings / sum(c.n_ratings) over (partition by c.user_id) as share
                from counts c join names n using (genre_id)
                order by c.user_id, c.n_ratings desc, n.genre""",
            [],
        ),
        "population_genres": (
            f"""select genre, cast(sum(n_ratings) as bigint) as n_ratings,
                       sum(avg_rating * n_ratings) / sum(n_ratings) as avg_rating, count(*) as n_users,
                       sum(n_ratings) / sum(sum(n_ratings)) over () as share
                from {alias}.user_genres
                group by genre
                order by n_ratings desc, genre""",
            [],
        ),
    }
