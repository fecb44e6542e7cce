-- (shared CTEs; needs movies(movie_id, genres)) the listed genres of each movie, a genre listed twice counted
-- once; a movie with an empty or null list (placeholders) has the genre '(no genres listed)'
exploded_genres as (
    select movie_id, unnest(genres) as genre from movies
),

listed_genres as (
    select distinct movie_id, genre
    from exploded_genres
    where genre is not null and genre <> ''
),

movie_genres as (
    select movie_id, genre from listed_genres
    union all
    select m.movie_id, '(no genres listed)' as genre
    from movies as m
    left join (select distinct movie_id from listed_genres) as l on m.movie_id = l.movie_id
    where l.movie_id is null
),
