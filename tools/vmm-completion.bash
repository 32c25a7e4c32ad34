# Bash completion for vmm(1).
#
# make install puts this file in PREFIX/share/bash-completion/completions/vmm, where the
# bash-completion package loads it the first time vmm is completed; without that package,
# source it from ~/.bashrc. It uses nothing but bash (4.2 or later).
#
#   vmm <TAB>                the verbs ('vmm --help' lists them; a built-in list otherwise)
#   vmm stop <TAB>           the running VMs: NAME of each NAME.sock in $XDG_RUNTIME_DIR/vmm,
#                            else /run/vmm (also for stats, cont, quit, snapshot, memory,
#                            inspect, dumpxml, fork, rm)
#   vmm restore <TAB>        the snapshots: NAME of each STORE/snapshots/NAME.snap, STORE being
#                            --store DIR (-s DIR) on the line, else $VMM_STORE, else
#                            $XDG_DATA_HOME/vmm/store, else ~/.local/share/vmm/store
#                            (also for vmm store rm)
#   vmm run --<TAB>          the options of the verb, read from 'vmm VERB --help' (each line
#                            of spaces then -x, --option or --option) the first time they are
#                            asked for, then kept for the shell's life
#   vmm run --swap <TAB>     a file for options whose argument is a PATH, FILE or SOCKET, a
#                            folder for DIR, nothing for the others (SIZE, N, TIME...)

# The lists in the caches are split on purpose (their words are verbs and options); a
# literal "~/" in a word is what the user typed, expanded by hand.
# shellcheck disable=SC2086,SC2088

# Used when the vmm being completed cannot be run (not installed yet, or not on PATH).
_vmm_fallback_verbs="run restore ps stats memory inspect dumpxml logs console stop cont quit snapshot fork store help"
_vmm_fallback_store_verbs="ls verify gc rm"
# Verbs whose first argument is a running VM's name.
_vmm_vm_verbs=" stats stop cont quit snapshot memory inspect dumpxml logs console fork rm "
# Verbs that take a store (--store DIR, -s DIR), known even when vmm cannot be run.
_vmm_store_takers=" restore snapshot store "

# Caches, filled lazily: keyed by "VMM VERB" (the verbs by "VMM"), so two different vmm
# binaries completed in one shell do not mix. -g: this file may be sourced from inside a
# function (bash-completion's loader does that), and the caches must outlive it.
declare -gA _vmm_verbs_cache=() _vmm_opts_cache=() _vmm_optarg_cache=()

# _vmm_run VMM ARGS...: VMM's output for ARGS when it can be run, else nothing.
_vmm_run()
{
	local cmd=$1
	shift
	[[ $cmd == "~/"* ]] && cmd=$HOME/${cmd#"~/"}
	type -P -- "$cmd" >/dev/null 2>&1 || return 0
	"$cmd" "$@" 2>/dev/null </dev/null
}

# _vmm_verbs VMM: the verbs, from the "Commands:" section of 'VMM --help'.
_vmm_verbs()
{
	local cmd=$1 line list=
	if [[ -z ${_vmm_verbs_cache[$cmd]+set} ]]; then
		local in=0
		while IFS= read -r line; do
			if [[ $line == Commands:* ]]; then
				in=1
			elif ((in)) && [[ -z $line ]]; then
				break
			elif ((in)) && [[ $line =~ ^\ \ ([a-z][a-z-]*)\  ]]; then
				list+="${BASH_REMATCH[1]} "
			fi
		done < <(_vmm_run "$cmd" --help)
		_vmm_verbs_cache[$cmd]=${list:-$_vmm_fallback_verbs}
	fi
	printf '%s\n' ${_vmm_verbs_cache[$cmd]}
}

# _vmm_learn VMM VERB: read 'VMM VERB --help' into the caches once: the options, and for
# each option that takes an argument, that argument's name (SIZE, DIR, PATH...).
_vmm_learn()
{
	local cmd=$1 verb=$2 line opts='' arg
	[[ -n ${_vmm_opts_cache["$cmd $verb"]+set} ]] && return 0
	# "  -m, --memory SIZE    text" or "      --stats    text": an argument is one word
	# in capitals after a single space; the description follows two or more.
	local re='^ +(-([A-Za-z0-9]), )?(--[A-Za-z0-9][A-Za-z0-9-]*)( ([A-Z][^ ]*))?'
	while IFS= read -r line; do
		[[ $line =~ $re ]] || continue
		arg=${BASH_REMATCH[5]}
		opts+="${BASH_REMATCH[3]} "
		[[ -n ${BASH_REMATCH[2]} ]] && opts+="-${BASH_REMATCH[2]} "
		if [[ -n $arg ]]; then
			_vmm_optarg_cache["$cmd $verb ${BASH_REMATCH[3]}"]=$arg
			[[ -n ${BASH_REMATCH[2]} ]] && _vmm_optarg_cache["$cmd $verb -${BASH_REMATCH[2]}"]=$arg
		fi
	done < <(_vmm_run "$cmd" "$verb" --help)
	_vmm_opts_cache["$cmd $verb"]=$opts
}

# _vmm_store_verbs VMM: the verbs of 'vmm store', from its --help ("  ls      text").
_vmm_store_verbs()
{
	local cmd=$1 line list=
	if [[ -z ${_vmm_verbs_cache["$cmd store"]+set} ]]; then
		while IFS= read -r line; do
			[[ $line =~ ^\ \ ([a-z]+)\ \ +[a-z] ]] && list+="${BASH_REMATCH[1]} "
		done < <(_vmm_run "$cmd" store --help)
		_vmm_verbs_cache["$cmd store"]=${list:-$_vmm_fallback_store_verbs}
	fi
	printf '%s\n' ${_vmm_verbs_cache["$cmd store"]}
}

# The running VMs: as 'vmm ps' finds them (stale sockets included: they are still names).
_vmm_vm_names()
{
	local dir f
	if [[ ${XDG_RUNTIME_DIR-} == /* ]]; then dir=$XDG_RUNTIME_DIR/vmm; else dir=/run/vmm; fi
	for f in "$dir"/*.sock; do
		[[ -e $f ]] || continue
		f=${f##*/}
		printf '%s\n' "${f%.sock}"
	done
}

# _vmm_snapshot_names STORE: the snapshots of STORE (empty: the default store). Unfinished
# manifests (.NAME.tmp) do not end in .snap.
_vmm_snapshot_names()
{
	local store=$1 f
	if [[ -z $store ]]; then
		if [[ -n ${VMM_STORE-} ]]; then
			store=$VMM_STORE
		elif [[ ${XDG_DATA_HOME-} == /* ]]; then
			store=$XDG_DATA_HOME/vmm/store
		elif [[ -n ${HOME-} ]]; then
			store=$HOME/.local/share/vmm/store
		else
			return 0
		fi
	fi
	[[ $store == "~/"* ]] && store=$HOME/${store#"~/"}
	for f in "$store"/snapshots/*.snap; do
		[[ -e $f ]] || continue
		f=${f##*/}
		printf '%s\n' "${f%.snap}"
	done
}

# COMPREPLY: the lines on standard input (one word each) that begin with $1.
_vmm_reply()
{
	local cur=$1 w
	COMPREPLY=()
	while IFS= read -r w; do
		[[ $w == "$cur"* ]] && COMPREPLY+=("$w")
	done
	return 0
}

# COMPREPLY: files (or with -d folders) beginning with $2, marked as file names for bash.
_vmm_files()
{
	local kind=-f
	[[ $1 == -d ]] && { kind=-d; shift; }
	compopt -o filenames 2>/dev/null
	mapfile -t COMPREPLY < <(compgen "$kind" -- "$1")
}

_vmm()
{
	local cword=$COMP_CWORD cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[0]}
	local -a words=("${COMP_WORDS[@]}")
	COMPREPLY=()

	# --opt=VALUE arrives as three words (= is a word break): treat it as --opt VALUE.
	if [[ $cur == = ]]; then
		cur=
	fi
	local prev=
	((cword > 0)) && prev=${words[cword - 1]}
	if [[ $prev == = ]] && ((cword > 1)); then
		prev=${words[cword - 2]}
	elif [[ ${words[cword]} == = ]]; then
		prev=${words[cword - 1]}
	fi

	if ((cword == 1)); then
		if [[ $cur == -* ]]; then
			_vmm_reply "$cur" < <(printf '%s\n' --help --version -h)
		else
			_vmm_reply "$cur" < <(_vmm_verbs "$cmd")
		fi
		return 0
	fi

	local verb=${words[1]}
	if [[ $verb == help ]]; then
		((cword == 2)) && _vmm_reply "$cur" < <(_vmm_verbs "$cmd")
		return 0
	fi
	_vmm_learn "$cmd" "$verb"

	# The words before the cursor: the store named on the line, and the arguments that
	# are not options nor an option's argument (for vmm store, the first is its verb).
	local i w store='' npos=0 sub=''
	for ((i = 2; i < cword; i++)); do
		w=${words[i]}
		if [[ $w == = ]]; then
			((i++))
			[[ ${words[i - 2]} == --store ]] && store=${words[i]}
		elif [[ ($w == --store || $w == -s) && $_vmm_store_takers == *" $verb "* ]]; then
			((i++))
			store=${words[i]}
			[[ ${words[i]} == = ]] && { ((i++)); store=${words[i]}; }
		elif [[ $w == -s?* && $_vmm_store_takers == *" $verb "* ]]; then
			store=${w#-s}
		elif [[ $w == --* && -n ${_vmm_optarg_cache["$cmd $verb $w"]+set} ]]; then
			((i++))
			[[ ${words[i]} == = ]] && ((i++))
		elif [[ $w == -? && -n ${_vmm_optarg_cache["$cmd $verb $w"]+set} ]]; then
			((i++))
		elif [[ $w == -* ]]; then
			:
		else
			((npos++ == 0)) && sub=$w
		fi
	done

	# The argument of an option.
	local arg=
	if [[ $prev == -* && $prev != "$cur" ]]; then
		arg=${_vmm_optarg_cache["$cmd $verb $prev"]-}
		[[ -z $arg && ($prev == -s || $prev == --store) && $_vmm_store_takers == *" $verb "* ]] && arg=DIR
	fi
	if [[ -n $arg ]]; then
		case $arg in
		DIR) _vmm_files -d "$cur" ;;
		PATH | FILE* | SOCKET*) _vmm_files "$cur" ;;
		esac
		return 0
	fi

	if [[ $cur == -* ]]; then
		_vmm_reply "$cur" < <(printf '%s\n' ${_vmm_opts_cache["$cmd $verb"]})
		return 0
	fi

	if [[ $_vmm_vm_verbs == *" $verb "* ]]; then
		((npos == 0)) && _vmm_reply "$cur" < <(_vmm_vm_names)
	else
		case $verb in
		restore)
			((npos == 0)) && _vmm_reply "$cur" < <(_vmm_snapshot_names "$store")
			;;
		store)
			if ((npos == 0)); then
				_vmm_reply "$cur" < <(_vmm_store_verbs "$cmd")
			elif [[ $sub == rm ]]; then
				_vmm_reply "$cur" < <(_vmm_snapshot_names "$store")
			elif ((npos == 1)); then
				_vmm_files -d "$cur"
			fi
			;;
		run)
			((npos == 0)) && _vmm_files "$cur"
			;;
		esac
	fi
	return 0
}

complete -F _vmm vmm
