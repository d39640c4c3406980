/* The few MPI calls mp needs (feature `mpi`), behind plain C functions so that Rust binds them
 * without bindgen: MPI's handles (MPI_Comm, MPI_Datatype) differ between Open MPI (pointers) and
 * MPICH (ints), and only this file sees them. Every function returns MPI's error code where MPI
 * has one. Errors on MPI_COMM_WORLD return instead of aborting (MPI_ERRORS_RETURN). */
#include <mpi.h>
#include <string.h>

int mp_mpi_init(int *provided) {
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
    if (rc == MPI_SUCCESS) {
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    return rc;
}

int mp_mpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }

int mp_mpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

/* Writes the processor (host) name into buf (at least MPI_MAX_PROCESSOR_NAME bytes, see
 * mp_mpi_max_name); its length into *len. */
int mp_mpi_processor_name(char *buf, int *len) { return MPI_Get_processor_name(buf, len); }

int mp_mpi_max_name(void) { return MPI_MAX_PROCESSOR_NAME; }

/* Broadcasts len bytes of buf from rank root to every rank. */
int mp_mpi_bcast(void *buf, int len, int root) {
    return MPI_Bcast(buf, len, MPI_BYTE, root, MPI_COMM_WORLD);
}

int mp_mpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

int mp_mpi_finalize(void) { return MPI_Finalize(); }

int mp_mpi_finalized(int *flag) { return MPI_Finalized(flag); }

int mp_mpi_initialized(int *flag) { return MPI_Initialized(flag); }

/* The library's own version string (MPI_Get_library_version), truncated to cap bytes. */
int mp_mpi_library_version(char *buf, int cap) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    int rc = MPI_Get_library_version(version, &len);
    if (rc != MPI_SUCCESS || cap <= 0) {
        return rc;
    }
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(buf, version, (size_t)len);
    buf[len] = 0;
    return rc;
}
