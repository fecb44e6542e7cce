"""Generated users' tastes (genre and latent-factor preferences) and the seeded sampling of which movies they rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cinematch.core.errors import BadInput

# A user's pick is a two-step draw: first a component by the user's taste weights, then a movie of that component
# by popularity, without repeating a movie. Component 0 is the whole catalogue (the mainstream pick); components
# 1..G are the genres; the last L are latent "niches": seeded unit directions in the rating factors' space. A movie
# belongs to the niche closest to its taste vector, and a user favours the niches closest to theirs. A taste vector
# leans towards the factor vector and towards the genres' own directions, and the factors lean towards the genres
# too, so picks, ratings and genres line up as in real data: users rate the genres they watch a little higher and
# their genre mix is personal. Measured at MovieLens-small size (610 users, 9,000 movies, 100k ratings):
# most-watched genre rated +0.08 over the user's others (MovieLens small: +0.06), split-half correlation of a
# user's genre shares 0.5 (MovieLens small: 0.63), top 10% of movies ~55% of the ratings (MovieLens small: 60%).
_TASTE_A, _TASTE_B = 3.0, 1.0  # per-user share of taste-driven picks ~ Beta(3, 1): mean 0.75, some mainstream users
_MAX_TASTE_SHARE = 0.95  # component 0 keeps some mass, so every user can reach the whole catalogue
_GENRE_SHARE = 0.1  # of the taste-driven picks, the share made by genre (broad, so mostly by latent niche)
_GENRE_CONCENTRATION = 2.0  # genre affinity ~ Dirichlet(2 * catalogue share + floor): most users favour a few genres
_GENRE_FLOOR = 0.02  # keeps rare genres (Film-Noir) reachable: no Dirichlet weight underflows to exactly 0
_MAX_NICHES = 40  # latent niches: up to 40 tastes beside the 18 genres
_MOVIES_PER_NICHE = 40  # smaller catalogues get fewer niches, so a niche always holds a choice of movies
_LATENT_SHARPNESS = 23.0  # softmax(23 * cosine to each niche): the closest niche gets ~80% of a user's niche picks
_GENRE_ALIGNMENT = 0.5  # weight of the genre direction in a factor vector (the rest is seeded noise)
# A taste vector: 0.2 the factor vector's direction, 0.5 the genres' direction, the rest seeded noise. Coupled more
# to the factors, users would rate what they pick much higher, and a baseline week (drawn after the base took
# every user's favourites) would rate visibly lower than the base.
_RATING_COUPLING = 0.2
_NICHE_GENRE = 0.5
# The components a user's draws can come from: the 16 heaviest hold all but ~0.1% of a user's taste (p99 0.8%),
# and every draw round does 3-4x less work than over all 59.
_TOP_COMPONENTS = 16
# Popularity: the catalogue's Zipf exponent is 1.6 (generate.py) and mainstream picks weigh it to the power 1.3.
# Taste spreads a user's picks over their niches and genres; these keep hits about as dominant as before.
_MAINSTREAM_EXPONENT = 1.3
_GUIDE_PER_UNIT = 2  # guide buckets per unit of weight (4 is no faster: the table outgrows the cache)
CHUNK = 1 << 20
KEY_SHIFT = 32  # pair key = user_id << 32 | movie_id: sorts like (user, movie), splits with shifts not division
_MAX_ROUNDS = 200
# Share of a first round's draws expected to be new pairs: about 0.85 for a base. Drawing 1 / 0.85 as many at
# once costs less than top-up rounds, whose draws mostly hit the movies every user already got (a random
# surplus is dropped); later rounds use the yield measured.
_FIRST_YIELD = 0.85


def n_components(n_genres: int, n_niches: int) -> int:
    """Number of choice components: the popularity component, one per genre, one per latent niche."""
    return 1 + n_genres + n_niches


def genre_component(genre: int) -> int:
    """Index of genre ``genre``'s choice component."""
    return 1 + genre


@dataclass(frozen=True)
class TasteSpace:
    """Seeded unit directions in the factor space, shared by every user and movie of a dataset."""

    genres: np.ndarray  # (G, rank)
    niches: np.ndarray  # (L, rank)


def taste_space(rng: np.random.Generator, n_genres: int, rank: int, n_movies: int) -> TasteSpace:
    """Random unit directions for the genres and the latent niches of a catalogue of about ``n_movies``."""
    n_niches = int(np.clip(n_movies // _MOVIES_PER_NICHE, 4, _MAX_NICHES))
    d = rng.standard_normal((n_genres + n_niches, rank))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return TasteSpace(genres=d[:n_genres], niches=d[n_genres:])


def _aligned(rng: np.random.Generator, direction: np.ndarray, sd: float, alignment: np.ndarray | float) -> np.ndarray:
    """Factor vectors with coordinate spread ``sd``: ``alignment`` of ``direction`` (unit rows), the rest noise."""
    n, rank = direction.shape
    noise = rng.standard_normal((n, rank))
    a = np.broadcast_to(np.asarray(alignment, dtype=np.float64), (n,))[:, None]
    # A unit vector's coordinates spread 1 / sqrt(rank); scaling by sqrt(rank) matches the noise's unit spread.
    factors: np.ndarray = (sd * (a * math.sqrt(rank) * direction + np.sqrt(1.0 - a**2) * noise)).astype(np.float32)
    return factors


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float64)."""
    x = x.astype(np.float64)
    unit: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return unit


def movie_factors(rng: np.random.Generator, genre_member: np.ndarray, space: TasteSpace, sd: float) -> np.ndarray:
    """(n, rank) float32 movie factors leaning towards the mean direction of each movie's genres."""
    return _aligned(rng, _unit_rows(genre_member @ space.genres), sd, _GENRE_ALIGNMENT)


def _along(vectors: np.ndarray, niches: np.ndarray) -> np.ndarray:
    """(n, L) projections of vectors on the niche directions."""
    # Both operands float64 and C-contiguous: a transposed or mixed-dtype operand makes numpy skip BLAS (~70x).
    along: np.ndarray = vectors.astype(np.float64) @ np.ascontiguousarray(niches.T)
    return along


@dataclass(frozen=True)
class UserTastes:
    """What a generated user likes: latent factors (which also drive the ratings), choice components and weights."""

    factors: np.ndarray  # (n, rank) float32
    comp: np.ndarray  # (n, _TOP_COMPONENTS) int8 the user's heaviest choice components, heaviest first
    weight: np.ndarray  # (n, _TOP_COMPONENTS) their weights; each row sums to 1


def user_tastes(
    rng: np.random.Generator, n: int, space: TasteSpace, genre_prior: np.ndarray, sd: float, taste: float
) -> UserTastes:
    """Seeded tastes of ``n`` users; ``genre_prior`` is the catalogue's genre distribution, ``sd`` the factor spread.

    ``taste`` in [0, 1] scales every preference: 0 puts all weight on component 0 and leaves no genre lean in the
    factors, so users pick by popularity alone.
    """
    n_genres = genre_prior.size
    niches = space.niches
    gamma = rng.standard_gamma(_GENRE_CONCENTRATION * genre_prior + _GENRE_FLOOR, (n, n_genres))
    affinity = gamma / np.maximum(gamma.sum(axis=1, keepdims=True), 1e-300)
    share = np.minimum(taste * rng.beta(_TASTE_A, _TASTE_B, n), _MAX_TASTE_SHARE)
    genre_dir = _unit_rows(affinity @ space.genres)
    factors = _aligned(rng, genre_dir, sd, taste * _GENRE_ALIGNMENT)
    latent = _LATENT_SHARPNESS * _along(_niche_vectors(rng, factors, genre_dir), niches)  # softmax, in place
    latent -= latent.max(axis=1, keepdims=True)
    np.exp(latent, out=latent)
    latent /= latent.sum(axis=1, keepdims=True)
    weights = np.empty((n, n_components(n_genres, niches.shape[0])))
    weights[:, 0] = 1.0 - share
    weights[:, 1 : 1 + n_genres] = (share * _GENRE_SHARE)[:, None] * affinity
    weights[:, 1 + n_genres :] = (share * (1.0 - _GENRE_SHARE))[:, None] * latent
    # Keep each user's heaviest components, heaviest first (numpy's multinomial stops at a row's last drawn
    # component, so most rows end early). Component 0 always stays, so the whole catalogue stays reachable.
    rank = -weights.astype(np.float32)  # float32 sorts ~1.5x faster; ties do not matter here
    rank[:, 0] -= 2.0
    comp = np.argsort(rank, axis=1)[:, :_TOP_COMPONENTS].astype(np.int8)
    kept = np.take_along_axis(weights, comp, axis=1)
    return UserTastes(factors=factors, comp=comp, weight=kept / kept.sum(axis=1, keepdims=True))


def _niche_vectors(rng: np.random.Generator, factors: np.ndarray, genre_dir: np.ndarray) -> np.ndarray:
    """Unit taste vectors that place users and movies among the niches (see _RATING_COUPLING)."""
    rest = math.sqrt(max(0.0, 1.0 - _RATING_COUPLING**2 - _NICHE_GENRE**2))
    noise = _unit_rows(rng.standard_normal(factors.shape))
    return _unit_rows(_RATING_COUPLING * _unit_rows(factors) + _NICHE_GENRE * genre_dir + rest * noise)


def movie_components(
    rng: np.random.Generator, genre_member: np.ndarray, factors: np.ndarray, space: TasteSpace
) -> np.ndarray:
    """(n, K) membership: every movie is in component 0, in its genres' components and in its latent niche."""
    n, n_genres = genre_member.shape
    member = np.zeros((n, n_components(n_genres, space.niches.shape[0])), dtype=bool)
    member[:, 0] = True
    member[:, 1 : 1 + n_genres] = genre_member
    genre_dir = _unit_rows(genre_member @ space.genres)
    niche = np.argmax(_along(_niche_vectors(rng, factors, genre_dir), space.niches), axis=1)  # the closest one
    member[np.arange(n), 1 + n_genres + niche] = True
    return member


@dataclass(frozen=True)
class Catalogue:
    """Every component's movies with their cumulative weights, one segment per component, plus a guide table.

    Each segment lists its movies heaviest first and is rescaled to a width equal to its number of movies, so a
    half-unit bucket of the guide table holds about half an entry in every component: a draw takes one lookup and
    ~0.25 steps on average. At 25M draws this is ~8x faster than np.searchsorted, whose random-access binary
    search misses the cache.
    """

    cdf: np.ndarray  # cumulative weight, segments in component order; a final +inf entry ends every search
    before: np.ndarray  # cumulative weight before each entry
    key: np.ndarray  # component + 1 - weight / segment width: ascending, to count a segment's heavy movies
    start: np.ndarray  # (K,) first entry of each segment
    last: np.ndarray  # (K,) last entry of each segment
    movie: np.ndarray  # movie index of each entry
    lo: np.ndarray  # (K,) cumulative weight where each component's segment starts
    width: np.ndarray  # (K,) the segment's total weight; 0 for a component with no movie here
    guide: np.ndarray  # guide[j] = first entry whose cdf exceeds j / _GUIDE_PER_UNIT (int32: half the cache lines)


def catalogue(member: np.ndarray, weight: np.ndarray, first: int = 0) -> Catalogue:
    """The sampling table of movies ``first, first + 1, ...`` with popularity ``weight`` in components ``member``."""
    comp, movie = np.nonzero(member.T)
    w = weight[movie]
    order = np.lexsort((-w, comp))  # by component, heaviest first
    comp, movie, w = comp[order], movie[order], w[order]
    w[comp == 0] **= _MAINSTREAM_EXPONENT
    k = member.shape[1]
    counts = np.bincount(comp, minlength=k)
    sums = np.bincount(comp, weights=w, minlength=k)
    w *= np.divide(counts, sums, out=np.zeros(k), where=sums > 0)[comp]
    cdf = np.append(np.cumsum(w), np.inf)
    before = np.concatenate(([0.0], cdf[:-1]))
    ends = np.cumsum(counts)
    lo = before[ends - counts]
    width = np.where(sums > 0, before[ends] - lo, 0.0)
    bounds = np.arange(int(before[-1] * _GUIDE_PER_UNIT) + 2, dtype=np.float64) / _GUIDE_PER_UNIT
    guide = np.searchsorted(cdf, bounds, side="right").astype(np.int32)
    key = comp + 1.0 - np.divide(w, width[comp], out=np.zeros(w.size), where=width[comp] > 0)
    return Catalogue(
        cdf=cdf, before=before, key=key, start=ends - counts, last=ends - 1,
        movie=np.append(movie, movie[-1]).astype(np.int64) + first, lo=lo, width=width, guide=guide,
    )  # fmt: skip


def _certain(cat: Catalogue, max_size: int) -> np.ndarray:
    """(K, max_size + 1): how many of a component's heaviest movies a cell of c draws takes for sure.

    Sampling c movies without replacement in proportion to weight gives a movie at most inclusion 1: the movies
    whose share of the remaining weight exceeds 1 / (remaining draws) are taken for certain, the rest drawn
    systematically (classic PPS sampling with certainty units). Three passes settle nearly every cell.
    """
    k = cat.lo.size
    size = np.arange(max_size + 1, dtype=np.int64)[None, :]
    taken = np.zeros((k, max_size + 1), dtype=np.int64)
    start, width = cat.start[:, None], cat.width[:, None]
    for _ in range(3):
        left = size - taken
        rest = np.divide(
            width - (cat.before[start + taken] - cat.lo[:, None]), width, out=np.zeros(taken.shape), where=width > 0
        )
        # A movie is certain when weight / width > rest / left, i.e. when key < component + 1 - rest / left.
        share = np.divide(rest, left, out=np.full(taken.shape, np.inf), where=left > 0)
        heavy = np.searchsorted(cat.key, (np.arange(k)[:, None] + 1.0 - share).ravel()).reshape(taken.shape)
        taken = np.minimum(np.maximum(taken, heavy - start), size)
    return taken


def _search(cat: Catalogue, q: np.ndarray) -> np.ndarray:
    """Index of the first entry whose cumulative weight exceeds each ``q``: guide table, then short steps."""
    idx = cat.guide[(q * _GUIDE_PER_UNIT).astype(np.int64)]
    todo = np.flatnonzero(cat.cdf[idx] <= q)  # the final +inf entry stops every query
    for _ in range(4):  # a bucket holds ~0.5 entries on average, so few queries are left after a few steps
        if not todo.size:
            break
        idx[todo] += 1
        todo = todo[cat.cdf[idx[todo]] <= q[todo]]
    if todo.size:  # buckets in a long tail of tiny weights: binary search for those few
        idx[todo] = np.searchsorted(cat.cdf, q[todo], side="right")
    return idx


def draw_pairs(
    rng: np.random.Generator, n: int, user_p: np.ndarray, taste: tuple[np.ndarray, np.ndarray], cat: Catalogue
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (user, movie) index draws, sorted by user (not by movie within a user).

    Users come from one multinomial over activity; each user's draws split over components by a multinomial on
    the user's taste ``(components, weights)`` (components without movies here excluded); each draw then takes
    a movie of its component by popularity, without repeating a movie inside the cell.
    """
    counts = rng.multinomial(n, user_p / user_p.sum())  # renormalised: multinomial rejects sums above 1
    users = np.flatnonzero(counts)
    comps = taste[0][users]
    comp_p = taste[1][users]
    if (cat.width <= 0).any():  # rows sum to 1 already unless some component has no movie here
        comp_p = comp_p * (cat.width[comps] > 0)
        comp_p /= comp_p.sum(axis=1, keepdims=True)
    cells = rng.multinomial(counts[users], comp_p)
    row, col = np.nonzero(cells)
    sizes = cells[row, col]
    del cells, comp_p
    u_idx = np.repeat(users[row], sizes)
    # Within each (user, component) cell of c draws: the movies certain at this size first, then systematic
    # sampling of the rest (evenly spaced points from one random start over the remaining cumulative weight).
    # A cell thus never repeats a movie (nearly), as a user who likes a niche watches its hits once and then
    # goes down the list; independent draws would waste most draws on repeats of the hits.
    comp = comps[row, col].astype(np.int64)
    max_size = int(sizes.max(initial=0))
    certain = _certain(cat, max_size).ravel()[comp * (max_size + 1) + sizes]
    rest_entry = cat.start[comp] + certain  # first entry of the drawn part
    rest_lo = cat.before[rest_entry]
    step = (cat.lo[comp] + cat.width[comp] - rest_lo) / np.maximum(sizes - certain, 1)
    offset = rest_lo + rng.random(sizes.size) * step
    rest_pos = np.cumsum(sizes) - sizes + certain  # first output position of the drawn part
    seg_last = cat.last[comp]
    cell_of = np.repeat(np.arange(sizes.size, dtype=np.int32), sizes)
    m_idx = np.empty(n, dtype=np.int64)
    for lo in range(0, n, CHUNK):  # chunks keep the temporaries small at 25M draws
        cell = cell_of[lo : lo + CHUNK]
        j = np.arange(lo, lo + cell.size, dtype=np.int64) - rest_pos[cell]  # < 0: one of the certain movies
        entry = rest_entry[cell] + j
        drawn = np.flatnonzero(j >= 0)
        dc = cell[drawn]
        q = j[drawn] * step[dc]
        q += offset[dc]
        # A point that rounding pushed past its segment's end stays inside the segment.
        entry[drawn] = np.minimum(_search(cat, q), seg_last[dc])
        m_idx[lo : lo + CHUNK] = cat.movie[entry]
    return u_idx, m_idx


def in_sorted(values: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """Whether each value occurs in the ascending array ``sorted_ref``."""
    if sorted_ref.size == 0:
        return np.zeros(values.size, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, values), sorted_ref.size - 1)
    found: np.ndarray = sorted_ref[pos] == values
    return found


def sample_pairs(
    rng: np.random.Generator,
    n: int,
    user_ids: np.ndarray,
    user_p: np.ndarray,
    taste: tuple[np.ndarray, np.ndarray],
    movie_ids: np.ndarray,
    cat: Catalogue,
    exclude: list[np.ndarray],
    *,
    strict: bool = True,
) -> np.ndarray:
    """``n`` distinct sorted keys ``user_id << 32 | movie_id`` not in any ``exclude`` (sorted) array.

    Draws pairs by weight, drops repeats and excluded pairs, and tops up until ``n`` are found; a random
    surplus is dropped. This samples without replacement per user, fully vectorized. When fewer than ``n``
    pairs can be placed, raises BadInput, or with ``strict`` False returns those found.
    """
    acc = np.empty(0, dtype=np.int64)
    yield_rate = _FIRST_YIELD
    empty_rounds = 0
    for _ in range(_MAX_ROUNDS):
        need = n - acc.size
        if need <= 0:
            break
        draws = int(min(need / yield_rate * 1.02 + 64, 8 * n + 1024))
        u_idx, m_idx = draw_pairs(rng, draws, user_p, taste, cat)
        keys = np.take(user_ids, u_idx) << KEY_SHIFT
        del u_idx
        keys |= np.take(movie_ids, m_idx)
        del m_idx
        keys.sort()
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]  # sorted, so repeats are adjacent
        for ref in [*exclude, acc]:
            if ref.size:
                keys = keys[~in_sorted(keys, ref)]
        yield_rate = max(keys.size / draws, 1e-3)
        if keys.size == 0:
            empty_rounds += 1
            if empty_rounds >= 5:
                break
            continue
        # Both runs are sorted and disjoint: a stable (run-merging) sort is ~5x faster than np.insert here.
        acc = keys if acc.size == 0 else np.sort(np.concatenate([acc, keys]), kind="stable")
    if acc.size < n and strict:
        raise BadInput(f"could only place {acc.size} of {n} distinct ratings; raise --users/--movies")
    if acc.size > n:
        keep = np.ones(acc.size, dtype=bool)
        keep[rng.choice(acc.size, acc.size - n, replace=False)] = False
        acc = acc[keep]
    return acc


def split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user_id, movie_id) of pair keys."""
    return keys >> KEY_SHIFT, keys & ((1 << KEY_SHIFT) - 1)


def capped_activity(activity: np.ndarray, n_ratings: int, n_movies: int, max_fraction: float) -> np.ndarray:
    """Activity weights whose expected ratings per user stay below ``max_fraction`` of the catalogue."""
    p: np.ndarray = activity / activity.sum()
    cap = max_fraction * n_movies / n_ratings
    if cap * p.size <= 1.0:
        return np.full(p.size, 1.0 / p.size)
    for _ in range(20):  # clipping renormalizes the rest upwards; a few passes settle it
        if p.max() <= cap * (1 + 1e-9):
            break
        p = np.minimum(p, cap)
        p /= p.sum()
    return p
