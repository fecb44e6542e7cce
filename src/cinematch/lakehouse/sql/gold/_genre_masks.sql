-- (shared CTEs; needs movie_genres) every genre gets one bit of a 62-bit word (word = index / 62), so a set of
-- genres is a few bigints; '(no genres listed)' has a bit of its own
genre_bits as (
    select genre, cast(floor(idx / 62.0) as integer) as word, cast(1 as bigint) << cast(idx % 62 as integer) as bit
    from (
        select genre, row_number() over (order by genre) - 1 as idx
        from (select genre from movie_genres union select '(no genres listed)' as genre) as distinct_genres
    ) as indexed
),

movie_masks as (
    select mg.movie_id, b.word, bit_or(b.bit) as mask
    from movie_genres as mg
    inner join genre_bits as b on mg.genre = b.genre
    group by mg.movie_id, b.word
),

no_genre_bit as (
    select word, bit from genre_bits where genre = '(no genres listed)'
),
