"""Server-side event handlers of the engine: admission (`kick`), joining a queue, decode scheduling,
and the handlers of prefill done, decode done, model loaded and wake-up.

`server_handlers(engine)` builds them as closures over the engine's `FleetState` and `SlotAccounts`
lists: each list is bound once to a closure variable (a cell read per use) instead of an attribute
lookup per use; this is the hot path, where one attribute chain per field would cost about a tenth of
the replay. The names bound are the state's field names shortened in one documented place (the table
in `_bind` below). Every handler takes the server and the time and returns the server touched.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from heapq import heappush
from types import SimpleNamespace

from torta.sim.cluster import DECODE_CTX_BUCKET_SHIFT as DSHIFT

INF = float("inf")
# request phases of a server (also the index of its slot accumulator in SlotAccounts.by_phase)
IDLE, PREFILL, DECODE, LOADING = 0, 1, 2, 3
# heap event kinds
EV_NET, EV_PREFILL, EV_DECODE, EV_LOAD, EV_WAKE = 0, 1, 2, 3, 4
EV_HOLD, EV_BATCH = 5, 6  # batch-window allocators only: reach the region's window / the window closes
EV_REPORT = 7  # the information model only (torta.sim.infomodel): a load report is taken
EV_ARRIVAL, EV_SLOT = 10, 11  # only in the debug event log
# a queued request is a row of QW doubles in its server's queue array (integers are exact as doubles)
Q_RID, Q_MOD, Q_PR, Q_OUT, Q_RDY, Q_RES = range(6)
QW = 6
Q_COMPACT = 6 * 4096  # drop a queue array's consumed head rows once they take this many doubles
FW = 6  # doubles per running request in FleetState.running rows: position, KV, prompt, join counter, adm, ft


def server_handlers(eng) -> SimpleNamespace:
    """kick, join, settle, schedule_decode and the four server event handlers (see the module docstring)."""
    ns = SimpleNamespace()
    ns.kick, ns.join, ns.settle, ns.schedule_decode = _admission(eng)
    ns.on_prefill_done, ns.on_decode_done, ns.on_model_loaded, ns.on_wake = _completion(eng, ns)
    return ns


def _admission(eng):
    f, a, T = eng.fleet, eng.acc, eng.tables
    heap, nxt, stype, types, region, capm = eng.heap, eng.nxt, T.stype, T.types, T.region, eng.kv_cap_of
    max_tokens, debug = eng.cfg.max_prefill_tokens, eng.cfg.debug
    # FleetState fields bound to closure variables (hot path): queue qd, queue_head qh, queue_last_ready_s
    # qlast, phase st, loaded_model loaded, perf ty_cur, kv_capacity cap_cur, max_batch mb_cur, kv_reserved
    # kv, batch_size nact, wake_s wk, decode_counter V, counter_time_s vt, iteration_s itv,
    # decode_next_s dnx, decode_version dver, finish_keys fk, prefill_batch pre, prefill_admitted_s padm,
    # blocked_head full, decoding_prompt_tokens sp, decoding_join_sum svj
    qd, qh, qlast, st, loaded, ty_cur, cap_cur, mb_cur = (f.queue, f.queue_head, f.queue_last_ready_s, f.phase,
                                                          f.loaded_model, f.perf, f.kv_capacity, f.max_batch)
    kv, nact, wk, V, vt, itv, dnx, dver = (f.kv_reserved, f.batch_size, f.wake_s, f.decode_counter,
                                           f.counter_time_s, f.iteration_s, f.decode_next_s, f.decode_version)
    fk, pre, padm, full, sp, svj = (f.finish_keys, f.prefill_batch, f.prefill_admitted_s, f.blocked_head,
                                    f.decoding_prompt_tokens, f.decoding_join_sum)
    span, accs, a_idle, a_load, a_pre, a_dec = a.span, a.by_phase, a.idle_s, a.loading_s, a.prefill_s, a.decode_s
    work, bint, kint, sw = a.work_s, a.batch_int, a.kv_int, a.switches
    unpack_row = eng.unpack_row
    pack_row = eng.pack_row
    drained = eng.alloc.drained
    # the prefix cache (torta.sim.prefix): None when off, so the path without it pays one test per prefill
    pc = eng.prefix
    pc_admit, pc_clear, iter_rows = (pc.admit, pc.clear, eng.iter_rows) if pc is not None else (None, None, None)

    def kick(s, now):
        """Start a prefill (or a model load) on s if its queue head allows. True if started."""
        qs = qd[s]
        if not qs:
            return False
        h = qh[s]
        _, m, tok, _, t, used = unpack_row(qs, 8 * h)  # the head's row
        if t > now:  # still travelling to s (joined at routing time): wake s when it lands
            if t < wk[s]:
                wk[s] = t
                heappush(heap, (t, nxt(), EV_WAKE, s, 0))
            return False
        if m != loaded[s]:
            if nact[s]:
                return False
            m = int(m)
            ty = types[stype[s][m]]
            if pc_clear is not None:  # another model's weights: the cached blocks are gone
                pc_clear(s)
            loaded[s] = m
            ty_cur[s] = ty
            cap_cur[s] = ty.kv_cap
            mb_cur[s] = ty.max_batch
            left = span[1] - now
            accs[st[s]][s] -= left
            a_load[s] += left
            st[s] = LOADING
            sw[s] += 1
            heappush(heap, (now + ty.load_s, nxt(), EV_LOAD, s, 0))
            return True
        capv = cap_cur[s]
        kv0 = kv[s]
        used += kv0  # KV with the head admitted
        n0 = nact[s]
        n = n0 + 1
        mbs = mb_cur[s]
        if used > capv or n > mbs:
            return False
        sq = tok * tok
        blocked = None
        j = h + QW
        end = len(qs)
        while j < end:  # more of the queue joins this prefill while it fits
            pos, mj, p, _, t, res = unpack_row(qs, 8 * j)
            if mj != m or t > now:
                break
            if used + res > capv or n >= mbs:
                blocked = pos
                break
            if tok + p > max_tokens:
                break
            used += res
            n += 1
            tok += p
            sq += p * p
            j += QW
        batch = qs[h:j]
        if j == end:
            del qs[:]
            qh[s] = 0
        elif j >= Q_COMPACT:
            del qs[:j]
            qh[s] = 0
        else:
            qh[s] = j
        if pc_admit is not None:  # cached prefix blocks skip their prefill
            tok, sq = pc_admit(s, iter_rows(batch), capv - used)
        ty = ty_cur[s]
        left = span[1] - now  # time to the slot's end (the accumulators are kept by difference)
        if st[s] == DECODE:  # pause the fluid decode
            V[s] += (now - vt[s]) / itv[s]
            vt[s] = now  # the outstanding decode event stays; it finds the server paused or early
            a_dec[s] -= left
        else:  # idle: kick runs only on idle or decoding servers
            a_idle[s] -= left
        a_pre[s] += left
        work[s] += tok * ty.c_prefill_s
        bint[s] += (n - n0) * left
        kint[s] += (used - kv0) / capv * left
        kv[s] = used
        nact[s] = n
        st[s] = PREFILL
        pre[s] = batch
        padm[s] = now
        full[s] = blocked
        d = ty.pre_cache.get((tok, sq))
        if d is None:
            d = ty.prefill_s(tok, sq)
        heappush(heap, (now + d, nxt(), EV_PREFILL, s, 0))
        return True

    def schedule_decode(s, now, ks, Vs):
        """(Re)compute s's decode iteration time for its batch and mean context, and schedule the next
        finish unless an earlier decode event is outstanding (it wakes up early and reschedules).
        `ks` and `Vs` are s's finish keys and decode counter (the callers hold them)."""
        b = len(ks)
        ty = ty_cur[s]
        ctx = (sp[s] + b * Vs - svj[s]) / b
        it = ty.dec_cache.get(((int(ctx) >> DSHIFT) << 16) | b) or ty.decode_s(b, ctx)
        itv[s] = it
        t = now + (-ks[-1] - Vs) * it
        if t < dnx[s]:
            dv = dver[s] + 1
            dver[s] = dv
            dnx[s] = t
            heappush(heap, (t, nxt(), EV_DECODE, s, dv))

    def settle(s, now):
        """After an event on s: start work if possible, else resume decoding or go idle."""
        if kick(s, now):
            return
        ks = fk[s]
        if ks:
            left = span[1] - now
            accs[st[s]][s] -= left
            a_dec[s] += left
            st[s] = DECODE
            vt[s] = now
            schedule_decode(s, now, ks, V[s])
        else:
            st[s] = IDLE
            if not qd[s]:
                drained(s, now)

    def join(s, rid, m, p, out, now, t_ready):
        """Put a request in s's queue; it reaches s at t_ready (now for a request that has arrived;
        later for one placed at routing time without a network event). The queue stays ordered by time
        of reaching the server (FIFO as if each had joined on landing, so an arrived request never
        waits behind one still travelling), and a request that is not there yet is never admitted
        (`kick`). A request joining behind the head cannot make the head admissible (work conservation
        holds before it joins): only a new head needs a kick."""
        res = p + out
        c = capm[s][m]
        row = pack_row(rid, m, p, out, t_ready, res if res <= c else c)
        qs = qd[s]
        if not qs or qlast[s] <= t_ready:
            head = not qs
            qs.frombytes(row)
            qlast[s] = t_ready
            if not head:
                return
        else:  # an earlier-landing request from a nearer origin overtakes those still travelling
            h = qh[s]
            k = len(qs) - QW
            while k > h and qs[k - QW + Q_RDY] > t_ready:
                k -= QW
            qs[k:k] = array("d", row)
            if k > h:
                return
        x = st[s]
        if x == IDLE or x == DECODE:
            if t_ready <= now:
                kick(s, now)
            elif t_ready < wk[s]:
                wk[s] = t_ready
                heappush(heap, (t_ready, nxt(), EV_WAKE, s, 0))
    return kick, join, settle, schedule_decode


def _completion(eng, ns):
    f, a, T = eng.fleet, eng.acc, eng.tables
    heap, nxt, region = eng.heap, eng.nxt, T.region
    # FleetState / SlotAccounts fields bound to closure variables (hot path; names as in _admission)
    qd, qh, st, ty_cur, cap_cur, kv, nact, wk = (f.queue, f.queue_head, f.phase, f.perf, f.kv_capacity,
                                                 f.kv_reserved, f.batch_size, f.wake_s)
    V, vt, itv, dnx, dver, fk, fd = (f.decode_counter, f.counter_time_s, f.iteration_s, f.decode_next_s,
                                     f.decode_version, f.finish_keys, f.running)
    pre, padm, full, sp, svj = (f.prefill_batch, f.prefill_admitted_s, f.blocked_head,
                                f.decoding_prompt_tokens, f.decoding_join_sum)
    span, a_idle, a_pre, a_dec, a_load, work, bint, kint = (a.span, a.idle_s, a.prefill_s, a.decode_s, a.loading_s,
                                                            a.work_s, a.batch_int, a.kv_int)
    kick, settle, schedule_decode = ns.kick, ns.settle, ns.schedule_decode
    drained = eng.alloc.drained
    done, chunk_doubles, flush_done = eng.done, eng.chunk_doubles, eng.flush_done
    add_done, put_done = done.frombytes, eng.put_done
    unpack_row, pack_row_into, iter_rows = eng.unpack_row, eng.pack_row_into, eng.iter_rows
    fw = array("d", bytes(8 * FW))  # scratch row for inserting into a running array
    pc_release = eng.prefix.release if eng.prefix is not None else None  # prefix cache: finished requests' blocks

    def on_decode_done(s, now):
        """EV_DECODE (the server's current decode event): the requests at the head of the finish order
        finish, or, when the batch changed since it was scheduled, the event is scheduled anew."""
        dnx[s] = INF
        if st[s] != DECODE:  # paused by a prefill: whoever resumes it schedules anew
            return s
        ks = fk[s]
        Vn = -ks[-1]
        Vs = V[s] + (now - vt[s]) / itv[s]
        if Vn - Vs > 1e-9 + 1e-12 * Vn:  # early: the batch changed since scheduling (same rate kept)
            V[s] = Vs
            vt[s] = now
            t = now + (Vn - Vs) * itv[s]
            dv = dver[s] + 1
            dver[s] = dv
            dnx[s] = t
            heappush(heap, (t, nxt(), EV_DECODE, s, dv))
            return s
        V[s] = Vn
        vt[s] = now
        lim = -(Vn + 1e-9)
        rs = region[s]
        fds = fd[s]
        kvf = 0.0  # KV freed
        k = 0  # requests finished
        while ks and ks[-1] >= lim:
            ks.pop()
            j = len(fds) - FW
            rid, res, pr, vj, adm, ft = unpack_row(fds, 8 * j)
            del fds[j:]
            kvf += res
            k += 1
            sp[s] -= pr
            svj[s] -= vj
            add_done(put_done(rid, rs, s, adm, ft, now, 0))
        if pc_release is not None:
            pc_release(s, done, len(done) - 7 * k)
        kv[s] -= kvf
        nact[s] -= k
        left = span[1] - now  # time to the slot's end (the accumulators are kept by difference)
        bint[s] -= k * left
        kint[s] -= kvf / cap_cur[s] * left
        if len(done) >= chunk_doubles:  # hand full chunks to the sink where completions are added
            flush_done()
        if qd[s] and kick(s, now):
            pass
        elif ks:
            schedule_decode(s, now, ks, Vn)
        else:
            a_dec[s] -= left
            a_idle[s] += left
            st[s] = IDLE
            if not qd[s]:
                drained(s, now)
        return s

    def on_prefill_done(s, now):
        """EV_PREFILL: the batch's first tokens; its requests join the decode (or finish if they want one
        token), then the server admits more, resumes decoding or goes idle."""
        left = span[1] - now
        a_pre[s] -= left
        batch = pre[s]
        pre[s] = None
        Vs = V[s]
        vt[s] = now
        ks = fk[s]
        fds = fd[s]
        adm = padm[s]
        freed = False
        d0 = len(done)
        its = 0.0  # decode iterations the batch will run
        for rid, _, p, o, _, res in iter_rows(batch):
            if o <= 1:
                freed = True
                kv[s] -= res
                nact[s] -= 1
                bint[s] -= left
                kint[s] -= res / cap_cur[s] * left
                add_done(put_done(rid, region[s], s, adm, now, now, 0))
            else:
                nk = -(Vs + (o - 1))
                k = bisect_right(ks, nk)
                if k and ks[k - 1] == nk:  # ties: the smaller request position finishes first
                    while k and ks[k - 1] == nk and fds[FW * (k - 1)] < rid:
                        k -= 1
                ks.insert(k, nk)
                pack_row_into(fw, 0, rid, res, p, Vs, adm, now)
                k *= FW
                fds[k:k] = fw
                sp[s] += p
                svj[s] += Vs
                its += o - 1
        work[s] += its * ty_cur[s].c_decode_s
        if freed and pc_release is not None:
            pc_release(s, done, d0)
        if freed and len(done) >= chunk_doubles:
            flush_done()
        if ks:
            a_dec[s] += left
            st[s] = DECODE
            qs = qd[s]
            if not (qs and (freed or qs[qh[s]] != full[s]) and kick(s, now)):
                schedule_decode(s, now, ks, Vs)
        else:
            a_idle[s] += left
            st[s] = IDLE
            if qd[s]:
                kick(s, now)
            else:
                drained(s, now)
        return s

    def on_model_loaded(s, now):
        """EV_LOAD: the model switch is over; the server starts on its queue."""
        left = span[1] - now
        a_load[s] -= left
        a_idle[s] += left
        st[s] = IDLE
        settle(s, now)
        return s

    def on_wake(s, now):
        """EV_WAKE (the server's current wake-up): a request placed at routing time reached s."""
        wk[s] = INF
        y = st[s]
        if y == IDLE or y == DECODE:
            kick(s, now)
        return s
    return on_prefill_done, on_decode_done, on_model_loaded, on_wake
