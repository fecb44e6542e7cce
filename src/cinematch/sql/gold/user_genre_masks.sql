-- gold.user_genre_masks: the listed genres each user has rated, as bit masks (state of incremental gold).
--
-- One row per (user_id, word): bit b of word w stands for the (62 * w + b)-th listed genre in name order, as in
-- user_engagement.sql. Not a table for analysts: incremental runs OR the new ratings' genres into it, so
-- user_engagement's genre_diversity does not have to read every rating of every user the batch touched.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select r.user_id, r.movie_id
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

listed_genres as (
    select distinct movie_id, genre
    from (select movie_id, unnest(genres) as genre from silver.movies) as exploded
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

final as (
    select r.user_id, m.word, bit_or(m.mask) as mask, p.as_of
    from ratings as r
    inner join movie_masks as m on r.movie_id = m.movie_id
    cross join params as p
    group by r.user_id, m.word, p.as_of
)

select * from final
