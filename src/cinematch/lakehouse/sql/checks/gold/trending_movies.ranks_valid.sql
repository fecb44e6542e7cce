with ranked as (
    select
        window_days,
        trending_rank,
        trending_score,
        lag(trending_score) over (partition by window_days order by trending_rank) as prev_score
    from gold.trending_movies
),
bad_order as (
    select window_days, trending_rank from ranked where prev_score < trending_score
),
bad_sequence as (
    select window_days, cast(null as bigint) as trending_rank
    from gold.trending_movies
    group by window_days
    having min(trending_rank) <> 1 or max(trending_rank) <> count(*)
        or count(distinct trending_rank) <> count(*)
)
select * from bad_order union all select * from bad_sequence
