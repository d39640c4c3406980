/* Preprocessed (not compiled) by build.rs: names the MPI implementation the headers belong to. */
#include <mpi.h>
#if defined(OMPI_MAJOR_VERSION)
MP_MPI_FLAVOR openmpi OMPI_MAJOR_VERSION OMPI_MINOR_VERSION OMPI_RELEASE_VERSION
#elif defined(MPICH_VERSION)
MP_MPI_FLAVOR mpich MPICH_VERSION
#else
MP_MPI_FLAVOR unknown MPI_VERSION MPI_SUBVERSION
#endif
