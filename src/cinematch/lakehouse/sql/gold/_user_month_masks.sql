-- (shared CTE; needs ratings(user_id, movie_id, year, month), movie_masks and no_genre_bit from
-- _genre_masks) the genres each user rated in each month, as masks
user_month_masks as (
    -- the genres a user rated in a month, OR-ed into masks: one pass over the ratings, no exploded join
    -- (ratings of movies missing from silver.movies carry '(no genres listed)', as in genre_months_movies)
    select r.user_id, r.year, r.month, coalesce(mm.word, n.word) as word, bit_or(coalesce(mm.mask, n.bit)) as mask
    from ratings as r
    left join movie_masks as mm on r.movie_id = mm.movie_id
    cross join no_genre_bit as n
    group by r.user_id, r.year, r.month, coalesce(mm.word, n.word)
),
