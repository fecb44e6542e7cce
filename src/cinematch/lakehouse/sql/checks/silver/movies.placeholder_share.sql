select movie_id, title from silver.movies where is_placeholder
