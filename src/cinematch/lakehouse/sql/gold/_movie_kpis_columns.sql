-- (shared CTEs and the closing select; needs params(as_of, prior_weight), movies and movie_stats(movie_id,
-- n_ratings, sum_rating, sum_squares) with exact sums) gold.movie_kpis's columns from per-movie sums
global_mean as (
    select sum(sum_rating) / sum(n_ratings) as global_mean from movie_stats
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
