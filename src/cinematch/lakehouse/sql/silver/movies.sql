with described as (
    select movie_id, title, genres, release_year
    from bronze.movies
    qualify row_number() over (partition by movie_id order by ingested_at desc, batch_id desc) = 1
),
referenced as (
    select distinct movie_id from silver.ratings
),
placeholders as (
    select r.movie_id, 'Unknown movie ' || r.movie_id as title, cast([] as varchar[]) as genres,
           cast(null as integer) as release_year
    from referenced r anti join described d using (movie_id)
),
final as (
    select movie_id, title, coalesce(genres, cast([] as varchar[])) as genres, release_year, false as is_placeholder
    from described
    union all
    select movie_id, title, genres, release_year, true as is_placeholder from placeholders
)
select * from final order by movie_id
