-- (shared CTEs; needs movies(movie_id, genres)) every listed genre gets one bit of a 62-bit word (word =
-- index / 62), so a set of genres is a few bigints; '(no genres listed)' is the absence of a genre: no bit
exploded_genres as (
    select movie_id, unnest(genres) as genre from movies
),

listed_genres as (
    select distinct movie_id, genre
    from exploded_genres
    where genre is not null and genre <> '' and genre <> '(no genres listed)'
),

genre_bits as (
    select genre, cast(floor(idx / 62.0) as integer) as word, cast(1 as bigint) << cast(idx % 62 as integer) as bit
    from (
        select genre, row_number() over (order by genre) - 1 as idx
        from (select distinct genre from listed_genres) as distinct_genres
    ) as indexed
),

movie_masks as (
    select g.movie_id, b.word, bit_or(b.bit) as mask
    from listed_genres as g
    inner join genre_bits as b on g.genre = b.genre
    group by g.movie_id, b.word
),
