select count(*) as n_movies_7d from gold.trending_movies where window_days = 7 having count(*) = 0
