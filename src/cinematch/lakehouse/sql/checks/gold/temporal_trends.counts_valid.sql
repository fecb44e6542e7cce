select * from gold.temporal_trends
where n_ratings is null or n_ratings < 1 or avg_rating is null or avg_rating < 0.5 or avg_rating > 5.0
