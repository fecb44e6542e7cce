with pivoted as (
    select
        movie_id,
        sum(case when window_days = 7 then n_ratings else 0 end) as n_7d,
        sum(case when window_days = 30 then n_ratings else 0 end) as n_30d,
        sum(case when window_days = 90 then n_ratings else 0 end) as n_90d
    from gold.trending_movies
    group by movie_id
)
select * from pivoted where n_7d > n_30d or n_30d > n_90d
