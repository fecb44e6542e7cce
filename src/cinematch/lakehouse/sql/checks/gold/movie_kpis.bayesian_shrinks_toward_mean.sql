with m as (
    select sum(n_ratings * avg_rating) / nullif(sum(n_ratings), 0) as global_mean from gold.movie_kpis
)
select k.movie_id, k.n_ratings, k.avg_rating, k.bayesian_rating, m.global_mean
from gold.movie_kpis as k
cross join m
where k.bayesian_rating is not null and (
    (k.n_ratings = 0 and abs(k.bayesian_rating - m.global_mean) > 1e-9)
    or (k.n_ratings > 0 and (
        k.bayesian_rating < least(k.avg_rating, m.global_mean) - 1e-9
        or k.bayesian_rating > greatest(k.avg_rating, m.global_mean) + 1e-9
    ))
)
