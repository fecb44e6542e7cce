-- gold.movie_kpis: one row per movie of silver.movies (unrated movies included with n_ratings 0).
--
-- Only ratings with rated_at <= $as_of count; $as_of defaults to the newest silver rated_at when null.
--   stddev_rating    = sample standard deviation; null below 2 ratings
--   bayesian_rating  = ($prior_weight * m + sum of ratings) / ($prior_weight + n_ratings), m = mean of all ratings
--                      up to as_of; an unrated movie gets m (null if $prior_weight is 0)
--   popularity_rank  = row_number() by n_ratings desc, movie_id asc: unique ranks 1..N, ties go to the lower id

with

params as (
    select
        coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of,
        cast($prior_weight as double) as prior_weight
),

ratings as (
    select r.movie_id, r.rating
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, title, release_year, is_placeholder from silver.movies
),

global_mean as (
    select sum(rating) / count(*) as global_mean from ratings
),

movie_stats as (
    -- ratings are half steps, so these sums are exact in any order: the incremental form
    -- (movie_kpis_merge.sql) keeps them and gets the same mean and standard deviation to the last bit
    select
        movie_id,
        count(*) as n_ratings,
        sum(rating) as sum_rating,
        sum(rating * rating) as sum_squares
    from ratings
    group by movie_id
),

kpis as (
    select
        m.movie_id,
        m.title,
        m.release_year,
        coalesce(s.n_ratings, 0) as n_ratings,
        s.sum_rating / s.n_ratings as avg_rating,
        -- sample standard deviation from exact sums: n * sum(x^2) - sum(x)^2 is exact; null below 2 ratings
        case
            when coalesce(s.n_ratings, 0) >= 2
                then sqrt((s.n_ratings * s.sum_squares - s.sum_rating * s.sum_rating) / (s.n_ratings * (s.n_ratings - 1.0)))
        end as stddev_rating,
        (p.prior_weight * g.global_mean + coalesce(s.sum_rating, 0.0))
            / nullif(p.prior_weight + coalesce(s.n_ratings, 0), 0) as bayesian_rating,
        m.is_placeholder,
        p.as_of
    from movies as m
    left join movie_stats as s on m.movie_id = s.movie_id
    cross join params as p
    cross join global_mean as g
),

final as (
    select
        movie_id,
        title,
        release_year,
        n_ratings,
        avg_rating,
        stddev_rating,
        bayesian_rating,
        row_number() over (order by n_ratings desc, movie_id asc) as popularity_rank,
        is_placeholder,
        as_of
    from kpis
)

select * from final
