select * from gold.trending_movies
where n_ratings is null or n_ratings < 1 or n_ratings_prev is null or n_ratings_prev < 0
