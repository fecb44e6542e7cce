-- (shared CTE; needs ratings(user_id, movie_id) and movie_masks from _listed_genre_masks) the genres each
-- user rated, as masks
user_masks as (
    -- the genres a user rated, OR-ed into masks in one pass over the ratings (re-ratings absorb themselves)
    select r.user_id, m.word, bit_or(m.mask) as mask
    from ratings as r
    inner join movie_masks as m on r.movie_id = m.movie_id
    group by r.user_id, m.word
),
