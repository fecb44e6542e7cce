select * from gold.trending_movies
where avg_rating is null or avg_rating < 0.5 or avg_rating > 5.0
   or (n_ratings_prev > 0 and (avg_rating_prev is null or avg_rating_prev < 0.5 or avg_rating_prev > 5.0))
   or (n_ratings_prev = 0 and avg_rating_prev is not null)
