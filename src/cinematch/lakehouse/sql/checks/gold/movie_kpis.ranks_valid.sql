with ranked as (
    select
        movie_id,
        n_ratings,
        popularity_rank,
        lag(n_ratings) over (order by popularity_rank) as prev_n,
        lag(movie_id) over (order by popularity_rank) as prev_movie_id
    from gold.movie_kpis
),
bad_order as (
    select movie_id, popularity_rank from ranked
    where prev_n < n_ratings or (prev_n = n_ratings and prev_movie_id > movie_id)
),
bad_sequence as (
    select cast(null as bigint) as movie_id, cast(null as bigint) as popularity_rank
    from gold.movie_kpis
    having min(popularity_rank) <> 1 or max(popularity_rank) <> count(*)
        or count(distinct popularity_rank) <> count(*)
)
select * from bad_order union all select * from bad_sequence
