select * from gold.genre_analytics where avg_rating is null or avg_rating < 0.5 or avg_rating > 5.0
