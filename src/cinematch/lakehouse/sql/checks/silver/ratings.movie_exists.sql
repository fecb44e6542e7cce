select r.* from silver.ratings r anti join silver.movies m using (movie_id)
