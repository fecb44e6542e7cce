-- gold.user_month_genre_masks: the genres each user rated in each month, as bit masks (state of incremental gold).
--
-- One row per (user_id, year, month, word), bits as in genre_analytics.sql ('(no genres listed)' has a bit of
-- its own there). Not a table for analysts: incremental runs OR the new ratings' genres into it, and the bits a
-- batch newly sets are the users it adds to genre_analytics.n_users.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select
        r.user_id,
        r.movie_id,
        cast(extract(year from r.rated_at) as integer) as year,
        cast(extract(month from r.rated_at) as integer) as month
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

listed_genres as (
    select distinct movie_id, genre
    from (select movie_id, unnest(genres) as genre from movies) as exploded
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

final as (
    select r.user_id, r.year, r.month, coalesce(mm.word, n.word) as word, bit_or(coalesce(mm.mask, n.bit)) as mask,
        p.as_of
    from ratings as r
    left join movie_masks as mm on r.movie_id = mm.movie_id
    cross join no_genre_bit as n
    cross join params as p
    group by r.user_id, r.year, r.month, coalesce(mm.word, n.word), p.as_of
)

select * from final
